#include "protocol/md5_auth.hpp"

#include "protocol/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdexcept>

namespace pglane::protocol::md5 {

namespace {

constexpr std::string_view hex_digits = "0123456789abcdef";

/// "md5" + lowercase hex of MD5(data).
std::string md5_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_md5(), nullptr) != 1 || length != 16)
        throw std::runtime_error("MD5 failed (OpenSSL)");
    std::string out = "md5";
    for (unsigned int i = 0; i < length; ++i) {
        out += hex_digits[digest[i] >> 4];
        out += hex_digits[digest[i] & 0x0F];
    }
    return out;
}

}  // namespace

std::string password_hash(std::string_view user, std::string_view password) {
    std::string input(password);
    input += user;
    return md5_hex(input);
}

std::string salted_response(std::string_view stored_md5_hash, std::string_view salt4) {
    std::string input(stored_md5_hash.substr(3));
    input += salt4;
    return md5_hex(input);
}

bool is_md5_hash(std::string_view text) {
    return text.size() == 35 && text.starts_with("md5") && text.find_first_not_of(hex_digits, 3) == std::string_view::npos;
}

bool check_response(std::string_view stored, std::string_view user, std::string_view salt,
                    std::string_view client_response) {
    if (stored.empty() || scram::is_verifier(stored)) return false;
    auto hash = is_md5_hash(stored) ? std::string(stored) : password_hash(user, stored);
    auto expected = salted_response(hash, salt);
    return client_response.size() == expected.size() &&
           CRYPTO_memcmp(client_response.data(), expected.data(), expected.size()) == 0;
}

}  // namespace pglane::protocol::md5
