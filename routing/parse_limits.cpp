#include "routing/parse_limits.hpp"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include <algorithm>
#include <vector>

namespace pglane::routing {
namespace {

// Below this length a statement cannot reach max_estimated_depth: every level of a chain
// costs at least two characters, and parenthesised levels more.
constexpr std::size_t scan_threshold_bytes = 2048;

// Each parenthesis level may hold a sub-select, a handful of tree levels.
constexpr std::size_t levels_per_parenthesis = 8;

/// Tokens of left-associative rules, which nest one tree level per occurrence.
bool deepens_chain(PgQuery__Token token) {
    switch (token) {
    case PG_QUERY__TOKEN__ASCII_37: case PG_QUERY__TOKEN__ASCII_42: case PG_QUERY__TOKEN__ASCII_43:
    case PG_QUERY__TOKEN__ASCII_45: case PG_QUERY__TOKEN__ASCII_47: case PG_QUERY__TOKEN__ASCII_60:
    case PG_QUERY__TOKEN__ASCII_61: case PG_QUERY__TOKEN__ASCII_62: case PG_QUERY__TOKEN__ASCII_91:
    case PG_QUERY__TOKEN__ASCII_94: case PG_QUERY__TOKEN__Op: case PG_QUERY__TOKEN__TYPECAST:
    case PG_QUERY__TOKEN__LESS_EQUALS: case PG_QUERY__TOKEN__GREATER_EQUALS:
    case PG_QUERY__TOKEN__NOT_EQUALS: case PG_QUERY__TOKEN__OPERATOR: case PG_QUERY__TOKEN__AND:
    case PG_QUERY__TOKEN__OR: case PG_QUERY__TOKEN__NOT: case PG_QUERY__TOKEN__IS:
    case PG_QUERY__TOKEN__ISNULL: case PG_QUERY__TOKEN__NOTNULL: case PG_QUERY__TOKEN__LIKE:
    case PG_QUERY__TOKEN__ILIKE: case PG_QUERY__TOKEN__SIMILAR: case PG_QUERY__TOKEN__BETWEEN:
    case PG_QUERY__TOKEN__IN_P: case PG_QUERY__TOKEN__COLLATE: case PG_QUERY__TOKEN__AT:
    case PG_QUERY__TOKEN__OVERLAPS: case PG_QUERY__TOKEN__UNION: case PG_QUERY__TOKEN__INTERSECT:
    case PG_QUERY__TOKEN__EXCEPT: case PG_QUERY__TOKEN__JOIN: return true;
    default: return false;
    }
}

bool read_varint(const std::uint8_t* data, std::size_t length, std::size_t& at, std::uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64 && at < length; shift += 7) {
        const std::uint8_t byte = data[at++];
        value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return true;
    }
    return false;
}

}  // namespace

bool may_nest_too_deeply(const std::string& sql) {
    if (sql.size() <= scan_threshold_bytes) return false;
    PgQueryScanResult scan = pg_query_scan(sql.c_str());
    bool too_deep = true;  // a statement the scanner rejects is refused: the parser would too
    if (scan.error == nullptr) {
        PgQuery__ScanResult* tokens = pg_query__scan_result__unpack(
            nullptr, scan.pbuf.len, reinterpret_cast<const std::uint8_t*>(scan.pbuf.data));
        if (tokens != nullptr) {
            std::size_t chain = 0;
            std::size_t depth = 0;
            std::size_t deepest = 0;
            for (std::size_t i = 0; i < tokens->n_tokens; ++i) {
                const PgQuery__Token token = tokens->tokens[i]->token;
                if (token == PG_QUERY__TOKEN__ASCII_40) deepest = std::max(deepest, ++depth);
                if (token == PG_QUERY__TOKEN__ASCII_41 && depth > 0) --depth;
                if (deepens_chain(token)) ++chain;
            }
            too_deep = chain + deepest * levels_per_parenthesis > max_estimated_depth;
            pg_query__scan_result__free_unpacked(tokens, nullptr);
        }
    }
    pg_query_free_scan_result(scan);
    return too_deep;
}

std::size_t message_nesting(const std::uint8_t* data, std::size_t length, std::size_t limit) {
    struct Open {
        std::size_t end;
        const ProtobufCMessageDescriptor* type;
    };
    std::vector<Open> open{{length, &pg_query__parse_result__descriptor}};
    std::size_t deepest = 1;
    std::size_t at = 0;
    while (!open.empty()) {
        if (at == open.back().end) {
            open.pop_back();
            continue;
        }
        std::uint64_t tag = 0;
        std::uint64_t value = 0;
        if (!read_varint(data, open.back().end, at, tag)) return SIZE_MAX;
        switch (tag & 7) {
        case 0: if (!read_varint(data, open.back().end, at, value)) return SIZE_MAX; break;
        case 1: at += 8; break;
        case 5: at += 4; break;
        case 2: {
            if (!read_varint(data, open.back().end, at, value) || value > open.back().end - at) return SIZE_MAX;
            const ProtobufCFieldDescriptor* field =
                protobuf_c_message_descriptor_get_field(open.back().type, static_cast<unsigned>(tag >> 3));
            if (field != nullptr && field->type == PROTOBUF_C_TYPE_MESSAGE) {
                open.push_back({at + value, static_cast<const ProtobufCMessageDescriptor*>(field->descriptor)});
                deepest = std::max(deepest, open.size());
                if (deepest > limit) return deepest;
            } else {
                at += value;
            }
            break;
        }
        default: return SIZE_MAX;
        }
        if (at > open.back().end) return SIZE_MAX;
    }
    return deepest;
}

}  // namespace pglane::routing
