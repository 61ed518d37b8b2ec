#include "proxy/statement_names.hpp"

#include "protocol/messages.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

namespace pglane::proxy {

namespace {

// The length of a NUL-terminated string at the front of `bytes`, or npos.
std::size_t cstring_length(protocol::Bytes bytes) {
    auto nul = std::find(bytes.begin(), bytes.end(), std::byte{0});
    if (nul == bytes.end()) return std::string_view::npos;
    return static_cast<std::size_t>(nul - bytes.begin());
}

}  // namespace

protocol::Bytes parse_definition(protocol::Bytes body) {
    std::size_t name = cstring_length(body);
    if (name == std::string_view::npos) return {};
    return body.subspan(name + 1);
}

std::string pooled_statement_name(std::string_view client_name, protocol::Bytes definition) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    EVP_DigestInit_ex(context, EVP_sha256(), nullptr);
    EVP_DigestUpdate(context, client_name.data(), client_name.size());
    const unsigned char separator = 0;
    EVP_DigestUpdate(context, &separator, 1);
    EVP_DigestUpdate(context, definition.data(), definition.size());
    EVP_DigestFinal_ex(context, digest.data(), &length);
    EVP_MD_CTX_free(context);
    static constexpr char hex[] = "0123456789abcdef";
    std::string name = "pglane_";
    for (std::size_t i = 0; i < 16 && i < length; ++i) {
        name.push_back(hex[digest[i] >> 4]);
        name.push_back(hex[digest[i] & 0x0f]);
    }
    return name;
}

bool append_renamed(std::string& out, char tag, protocol::Bytes body, std::string_view name) {
    // Where the statement name starts in the body, per message type.
    std::size_t at = 0;
    if (tag == 'B') {
        std::size_t portal = cstring_length(body);
        if (portal == std::string_view::npos) return false;
        at = portal + 1;
    } else if (tag == 'D' || tag == 'C') {
        if (body.empty()) return false;
        at = 1;
    } else if (tag != 'P') {
        return false;
    }
    std::size_t old = cstring_length(body.subspan(std::min(at, body.size())));
    if (at > body.size() || old == std::string_view::npos) return false;
    protocol::MessageWriter(out, tag)
        .raw(protocol::as_text(body.first(at)))
        .cstring(name)
        .raw(protocol::as_text(body.subspan(at + old + 1)));
    return true;
}

bool append_with_query(std::string& out, protocol::Bytes body, std::string_view query) {
    std::size_t name = cstring_length(body);
    if (name == std::string_view::npos) return false;
    std::size_t old = cstring_length(body.subspan(name + 1));
    if (old == std::string_view::npos) return false;
    protocol::MessageWriter(out, 'P')
        .raw(protocol::as_text(body.first(name + 1)))
        .cstring(query)
        .raw(protocol::as_text(body.subspan(name + 1 + old + 1)));
    return true;
}

std::optional<int> bind_result_format_count(protocol::Bytes body) {
    protocol::BodyReader reader(body);
    (void)reader.cstring();  // portal
    (void)reader.cstring();  // statement
    std::int16_t formats = reader.i16();
    for (int i = 0; i < formats && !reader.failed(); ++i) (void)reader.i16();
    std::int16_t parameters = reader.i16();
    for (int i = 0; i < parameters && !reader.failed(); ++i) {
        std::int32_t length = reader.i32();
        if (length > 0) (void)reader.bytes(static_cast<std::size_t>(length));
    }
    std::int16_t results = reader.i16();
    if (reader.failed() || formats < 0 || parameters < 0 || results < 0) return std::nullopt;
    return results;
}

}  // namespace pglane::proxy
