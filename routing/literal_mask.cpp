#include "routing/literal_mask.hpp"

#include <array>
#include <charconv>
#include <cstdint>

namespace pglane::routing {

namespace {

// What a character can be, one table lookup per character of every statement masked.
enum CharKind : std::uint8_t {
    word_start = 1,      // a letter, '_' or a byte of a multibyte character
    digit = 2,
    starts_nothing = 4,  // copied as it is: not a digit, a quote, '$', '-', '/' or '.'
};

constexpr std::array<std::uint8_t, 256> char_kinds = [] {
    std::array<std::uint8_t, 256> kinds{};
    for (std::size_t c = 0; c < kinds.size(); ++c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80) kinds[c] = word_start;
        else if (c >= '0' && c <= '9') kinds[c] = digit;
        else if (std::string_view("-/\"'$.").find(static_cast<char>(c)) == std::string_view::npos) kinds[c] = starts_nothing;
    }
    return kinds;
}();

std::uint8_t kind_of(char c) { return char_kinds[static_cast<unsigned char>(c)]; }

bool is_identifier_char(char c) { return (kind_of(c) & (word_start | digit)) != 0; }

bool is_digit(char c) { return kind_of(c) == digit; }

// Lexical states of https://www.postgresql.org/docs/15/sql-syntax-lexical.html that matter here.
class Masker {
public:
    Masker(std::string_view sql, std::string& out) : sql_(sql), out_(out) {
        out_.clear();
        out_.reserve(sql.size() + 8);
    }

    bool run() {
        while (i_ < sql_.size()) {
            copy_plain_run();
            if (i_ == sql_.size()) break;
            char c = sql_[i_];
            bool ok = true;
            if (c == '-' && next() == '-') ok = copy_line_comment();
            else if (c == '/' && next() == '*') ok = copy_block_comment();
            else if (c == '"') ok = copy_quoted_identifier();
            else if (c == '\'') ok = mask_string();
            else if (c == '$') ok = false;  // parameters and dollar quotes: leave the text alone
            else if (is_digit(c) || (c == '.' && is_digit(next()))) ok = mask_number();
            else copy_word_or_char();
            if (!ok) return false;
        }
        return masked_ != 0;
    }

private:
    [[nodiscard]] char next() const { return i_ + 1 < sql_.size() ? sql_[i_ + 1] : '\0'; }
    [[nodiscard]] bool after_identifier() const { return !out_.empty() && is_identifier_char(out_.back()); }

    void emit_parameter() {
        // Every masked statement passes here once per literal: std::to_chars, not a format
        // string parsed each time.
        char digits[12];
        auto [end, ec] = std::to_chars(digits, digits + sizeof digits, ++masked_);
        out_ += '$';
        out_.append(digits, end);
    }

    bool copy_line_comment() {
        std::size_t end = sql_.find('\n', i_);
        end = end == std::string_view::npos ? sql_.size() : end;
        out_.append(sql_.substr(i_, end - i_));
        i_ = end;
        return true;
    }

    bool copy_block_comment() {
        int depth = 0;
        std::size_t j = i_;
        while (j < sql_.size()) {
            if (sql_[j] == '/' && j + 1 < sql_.size() && sql_[j + 1] == '*') {
                ++depth;
                j += 2;
            } else if (sql_[j] == '*' && j + 1 < sql_.size() && sql_[j + 1] == '/') {
                j += 2;
                if (--depth == 0) break;
            } else {
                ++j;
            }
        }
        if (depth != 0) return false;
        out_.append(sql_.substr(i_, j - i_));
        i_ = j;
        return true;
    }

    bool copy_quoted_identifier() {
        std::size_t j = i_ + 1;
        while (j < sql_.size()) {
            if (sql_[j] == '"') {
                if (j + 1 < sql_.size() && sql_[j + 1] == '"') {
                    j += 2;
                    continue;
                }
                out_.append(sql_.substr(i_, j + 1 - i_));
                i_ = j + 1;
                return true;
            }
            ++j;
        }
        return false;
    }

    bool mask_string() {
        if (after_identifier()) return false;  // E'', B'', X'', U&'' and friends
        std::size_t j = i_ + 1;
        while (j < sql_.size()) {
            if (sql_[j] == '\\') return false;  // meaning depends on standard_conforming_strings
            if (sql_[j] == '\'') {
                if (j + 1 < sql_.size() && sql_[j + 1] == '\'') {
                    j += 2;
                    continue;
                }
                i_ = j + 1;
                emit_parameter();
                return true;
            }
            ++j;
        }
        return false;
    }

    bool mask_number() {
        if (after_identifier()) {  // a digit inside a name: t1, col2
            copy_word_or_char();
            return true;
        }
        std::size_t j = i_;
        while (j < sql_.size() && (is_digit(sql_[j]) || sql_[j] == '.' || sql_[j] == '_')) ++j;
        if (j < sql_.size() && (sql_[j] == 'e' || sql_[j] == 'E')) {
            std::size_t k = j + 1;
            if (k < sql_.size() && (sql_[k] == '+' || sql_[k] == '-')) ++k;
            if (k < sql_.size() && is_digit(sql_[k])) {
                j = k;
                while (j < sql_.size() && is_digit(sql_[j])) ++j;
            }
        }
        if (j < sql_.size() && is_identifier_char(sql_[j])) return false;  // 0x1F, 1abc: not modelled
        i_ = j;
        emit_parameter();
        return true;
    }

    // Where the identifier characters from `j` on end: a word with its digits (t1, col2).
    [[nodiscard]] std::size_t word_end(std::size_t j) const {
        while (j < sql_.size() && is_identifier_char(sql_[j])) ++j;
        return j;
    }

    // Copies, in one append, what copy_word_or_char would copy piece by piece: words, and the
    // characters that start nothing of their own. That is most of a statement's text.
    void copy_plain_run() {
        std::size_t j = i_;
        while (j < sql_.size()) {
            const std::uint8_t kind = kind_of(sql_[j]);
            if (kind == word_start) {
                j = word_end(j + 1);
            } else if (kind == starts_nothing) {
                ++j;
            } else {
                break;
            }
        }
        out_.append(sql_.substr(i_, j - i_));
        i_ = j;
    }

    void copy_word_or_char() {
        if (!is_identifier_char(sql_[i_])) {
            out_.push_back(sql_[i_++]);
            return;
        }
        const std::size_t j = word_end(i_);
        out_.append(sql_.substr(i_, j - i_));
        i_ = j;
    }

    std::string_view sql_;
    std::size_t i_ = 0;
    std::string& out_;
    int masked_ = 0;
};

}  // namespace

std::optional<std::string> mask_literals(std::string_view sql) {
    std::string shape;
    if (!mask_literals(sql, shape)) return std::nullopt;
    return shape;
}

bool mask_literals(std::string_view sql, std::string& shape) { return Masker(sql, shape).run(); }

}  // namespace pglane::routing
