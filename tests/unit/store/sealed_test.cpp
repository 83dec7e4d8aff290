// AES-256-GCM sealing of stored records (store/sealed): round trip, no plaintext in the sealed
// bytes, a fresh nonce each time, and every changed byte, other row or missing key refused.
#include "store/sealed.hpp"

#include <gtest/gtest.h>

#include <openssl/rand.h>

#include <set>
#include <stdexcept>

namespace samband::store {
namespace {

// A throwaway key for the test: 32 random bytes as hex (never a committed key).
std::string fresh_key_hex() {
    unsigned char b[32];
    EXPECT_EQ(RAND_bytes(b, sizeof b), 1);
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s.push_back(hex[c >> 4]);
        s.push_back(hex[c & 15]);
    }
    return s;
}

const std::string kNote =
    R"({"subject":{"fnr":"14839134623","name":{"given":"Kari"}},"note":"Sover dårlig"})";

TEST(sealed, a_record_opens_to_its_bytes_and_holds_no_plaintext) {
    keyring k;
    k.add("k1", fresh_key_hex());
    std::string s = k.seal(kNote, "payload:ev-1");
    EXPECT_TRUE(keyring::is_sealed(s));
    EXPECT_EQ(keyring::key_id_of(s), "k1");
    EXPECT_EQ(s.find("14839134623"), std::string::npos);
    EXPECT_EQ(s.find("Sover"), std::string::npos);
    EXPECT_EQ(s.find("Kari"), std::string::npos);
    auto back = k.open(s, "payload:ev-1");
    ASSERT_TRUE(back) << back.error();
    EXPECT_EQ(*back, kNote);
    EXPECT_EQ(s.size(), kNote.size() + 4 + 1 + 2 + 12 + 16);
    // A fresh nonce each time: the same text never seals to the same bytes.
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) seen.insert(k.seal(kNote, "payload:ev-1"));
    EXPECT_EQ(seen.size(), 100u);
    auto empty = k.open(k.seal("", "a"), "a");
    ASSERT_TRUE(empty);
    EXPECT_EQ(*empty, "");
}

TEST(sealed, every_flipped_byte_another_row_or_a_wrong_key_is_an_error_naming_the_key) {
    keyring k;
    k.add("k1", fresh_key_hex());
    std::string s = k.seal(kNote, "payload:ev-1");
    for (std::size_t i = 0; i < s.size(); ++i) {
        std::string bad = s;
        bad[i] = static_cast<char>(bad[i] ^ 0x01);
        auto r = k.open(bad, "payload:ev-1");
        EXPECT_FALSE(r) << "byte " << i << " flipped and still opened";
    }
    auto other_row = k.open(s, "payload:ev-2");
    ASSERT_FALSE(other_row);
    EXPECT_NE(other_row.error().find("authentication failed under encryption key \"k1\""),
              std::string::npos)
        << other_row.error();
    keyring wrong;
    wrong.add("k1", fresh_key_hex());
    EXPECT_FALSE(wrong.open(s, "payload:ev-1"));
    keyring none;
    none.add("k2", fresh_key_hex());
    auto missing = none.open(s, "payload:ev-1");
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().find("\"k1\", which is not configured"), std::string::npos)
        << missing.error();
    EXPECT_FALSE(k.open("plain text", "payload:ev-1"));
    EXPECT_FALSE(keyring::is_sealed(kNote));
}

TEST(sealed, after_a_rotation_old_records_open_and_new_ones_use_the_new_key) {
    keyring k;
    std::string old_key = fresh_key_hex();
    k.add("2026-01", old_key);
    std::string before = k.seal(kNote, "payload:ev-1");
    const std::string new_key = fresh_key_hex();
    k.add("2026-12", new_key);
    EXPECT_EQ(k.current(), "2026-01") << "the first key stays current until set_current";
    k.set_current("2026-12");
    std::string after = k.seal(kNote, "payload:ev-1");
    EXPECT_EQ(keyring::key_id_of(after), "2026-12");
    ASSERT_TRUE(k.open(before, "payload:ev-1"));
    ASSERT_TRUE(k.open(after, "payload:ev-1"));
    // Re-sealing under the new key (what a rotation does) leaves a record the new key alone opens.
    std::string resealed = k.seal(*k.open(before, "payload:ev-1"), "payload:ev-1");
    keyring only_new;
    EXPECT_THROW(only_new.set_current("2026-12"), std::invalid_argument);
    only_new.add("2026-12", new_key);
    auto r = only_new.open(resealed, "payload:ev-1");
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, kNote);
    EXPECT_FALSE(only_new.open(before, "payload:ev-1")) << "the old key is gone";
}

TEST(sealed, bad_key_material_is_refused_naming_the_key_id_not_the_material) {
    keyring k;
    const std::string short_hex = "00112233";
    try {
        k.add("main", short_hex);
        FAIL() << "a 4-byte key was taken";
    } catch (const std::invalid_argument& e) {
        std::string w = e.what();
        EXPECT_NE(w.find("\"main\""), std::string::npos) << w;
        EXPECT_EQ(w.find(short_hex), std::string::npos) << w;
    }
    EXPECT_THROW(k.add("", fresh_key_hex()), std::invalid_argument);
    EXPECT_THROW(k.add(std::string(65, 'x'), fresh_key_hex()), std::invalid_argument);
    EXPECT_TRUE(k.empty());
    // base64 of 32 bytes works as well as hex, with a trailing newline from a secret file.
    k.add("b64", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");
    EXPECT_TRUE(k.open(k.seal("x", "a"), "a"));
}

}  // namespace
}  // namespace samband::store
