// Hostile input: every document here is refused with a clear reason and never crashes; nothing
// is fetched from the network or the file system.
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <random>

namespace samband::nhn {
namespace {

using namespace test;

const std::string valid_message_path =
    "samples/dialogmelding/1.1/helsefaglig-dialog/samsvar-test-message.xml";

void expect_refused(std::string_view xml, codec_errc code, const std::string& reason,
                    const parse_limits& limits = {}) {
    auto m = parse_message(the_codec().schemas(), xml, limits);
    ASSERT_FALSE(m) << "accepted a hostile document";
    EXPECT_EQ(m.error().code, code) << m.error().what();
    EXPECT_NE(m.error().message.find(reason), std::string::npos) << m.error().what();
}

TEST(NhnHostile, BillionLaughsIsRefusedAsDtd) {
    std::string xml = R"(<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">&lol9;</MsgHead>)";
    expect_refused(xml, codec_errc::dtd_forbidden, "<!DOCTYPE lolz>");
}

TEST(NhnHostile, ExternalEntityIsRefusedAndNothingIsRead) {
    std::string xml = R"(<?xml version="1.0"?>
<!DOCTYPE MsgHead [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo>&xxe;</MsgInfo></MsgHead>)";
    auto m = the_codec().parse(xml);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, codec_errc::dtd_forbidden);
    EXPECT_EQ(m.error().message.find("root:"), std::string::npos);
}

TEST(NhnHostile, ExternalDtdIsRefused) {
    expect_refused(R"(<?xml version="1.0"?>
<!DOCTYPE MsgHead SYSTEM "http://127.0.0.1:9/evil.dtd">
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"/>)",
                   codec_errc::dtd_forbidden, "document type declaration");
}

TEST(NhnHostile, ParameterEntityIsRefused) {
    expect_refused(R"(<!DOCTYPE x [ <!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p; ]><x/>)",
                   codec_errc::dtd_forbidden, "not allowed");
}

TEST(NhnHostile, UndeclaredEntityReferenceIsNotWellFormed) {
    expect_refused(
        R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">&xxe;</MsgHead>)",
        codec_errc::not_well_formed, "Entity 'xxe' not defined");
}

TEST(NhnHostile, HugeAttributeIsRefused) {
    std::string xml = R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24" a=")" +
                      std::string(200 * 1024, 'A') + R"("/>)";
    expect_refused(xml, codec_errc::attribute_too_large, "attribute 'a' is 204800 bytes");
}

TEST(NhnHostile, DeepNestingIsRefused) {
    std::string xml = R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">)";
    for (int i = 0; i < 5000; ++i) xml += "<a>";
    for (int i = 0; i < 5000; ++i) xml += "</a>";
    xml += "</MsgHead>";
    expect_refused(xml, codec_errc::too_deep, "deeper than 64");
}

TEST(NhnHostile, TwoHundredThousandAttributesOnOneElementAreRefusedBeforeLibxml2) {
    // libxml2 checks attribute names pairwise: parsed, this document takes minutes. The linear
    // pre-scan refuses it before libxml2 sees it (bench_nhn_codec measures the time).
    std::string xml = R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><a)";
    for (int i = 0; i < 200 * 1000; ++i) xml += " a" + std::to_string(i) + "=\"x\"";
    xml += "/></MsgHead>";
    expect_refused(xml, codec_errc::too_large, "an element with more than 256 attributes");
}

TEST(NhnHostile, AttributeCountIgnoresEqualsSignsInValuesCommentsAndText) {
    // '=' inside quoted values, comments, CDATA and text are not attributes: only the real count
    // matters, so the parser proceeds to the schema check (which refuses the unknown element).
    std::string many(1000, '=');
    std::string xml = R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24" )"
                      R"(x=")" +
                      many + R"(>" y=')" + many + R"('><!-- )" + many + " -->" + many +
                      "<![CDATA[" + many + "]]></MsgHead>";
    auto m = parse_message(the_codec().schemas(), xml, {});
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().code, codec_errc::too_large) << m.error().what();
    parse_limits one;
    one.max_attributes_per_element = 1;
    expect_refused(xml, codec_errc::too_large, "more than 1 attributes", one);
}

TEST(NhnHostile, MillionsOfSmallElementsAreRefused) {
    std::string xml = R"(<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">)";
    for (int i = 0; i < 300 * 1000; ++i) xml += "<a/>";
    xml += "</MsgHead>";
    expect_refused(xml, codec_errc::too_large, "more than 200000 elements and attributes");
}

TEST(NhnHostile, WrongRootNamespaceIsRefused) {
    std::string xml = read_file(shared(valid_message_path));
    const std::string ns(names::msghead_ns);
    auto at = xml.find(ns);
    xml.replace(at, ns.size(), "http://evil.example/msghead");
    expect_refused(xml, codec_errc::wrong_root, "namespace 'http://evil.example/msghead'");
}

TEST(NhnHostile, WrongRootElementIsRefused) {
    expect_refused(R"(<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"/>)",
                   codec_errc::wrong_root, "root element is 'Envelope', expected 'MsgHead'");
}

TEST(NhnHostile, TruncatedBase64IsRefused) {
    std::string xml = read_file(shared(valid_message_path));
    auto end = xml.find("</Base64Container>");
    xml.erase(end - 3, 3);  // three characters short: no longer a multiple of four
    expect_refused(xml, codec_errc::schema_invalid, "base64Binary");
}

TEST(NhnHostile, InvalidBase64CharactersAreRefused) {
    std::string xml = read_file(shared(valid_message_path));
    auto start = xml.find("JVBERi0x");
    xml.replace(start, 4, "J*B!");
    expect_refused(xml, codec_errc::schema_invalid, "base64Binary");
}

TEST(NhnHostile, Base64DecoderRefusesWhatTheSchemaMightLetThrough) {
    auto truncated = base64_decode("QUJD\nRA");
    ASSERT_FALSE(truncated);
    EXPECT_EQ(truncated.error().code, codec_errc::bad_base64);
    EXPECT_NE(truncated.error().message.find("not a multiple of 4"), std::string::npos);
    auto inner_padding = base64_decode("QQ==QUJD");
    ASSERT_FALSE(inner_padding);
    EXPECT_NE(inner_padding.error().message.find("after '=' padding"), std::string::npos);
    auto bad_char = base64_decode("QU*D");
    ASSERT_FALSE(bad_char);
    EXPECT_NE(bad_char.error().message.find("offset 2"), std::string::npos);
    auto too_big = base64_decode("QUJDRA==", 3);
    ASSERT_FALSE(too_big);
    EXPECT_EQ(too_big.error().code, codec_errc::too_large);
    auto ok = base64_decode(" QUJD\r\n RA== ");
    ASSERT_TRUE(ok);
    EXPECT_EQ(std::string(ok->begin(), ok->end()), "ABCD");
}

TEST(NhnHostile, WrongEncodingDeclarationsAreRefused) {
    expect_refused(R"(<?xml version="1.0" encoding="UTF-16"?><MsgHead/>)",
                   codec_errc::unsupported_encoding, "declared encoding 'UTF-16'");
    expect_refused(R"(<?xml version="1.0" encoding="x-klingon"?><MsgHead/>)",
                   codec_errc::unsupported_encoding, "x-klingon");
    // Declared UTF-8, but ISO-8859-1 bytes (æ = 0xE6).
    expect_refused("<?xml version=\"1.0\" encoding=\"UTF-8\"?><MsgHead>\xE6</MsgHead>",
                   codec_errc::not_well_formed, "UTF-8");
    expect_refused(std::string("\xFF\xFE<\0M\0", 6), codec_errc::unsupported_encoding,
                   "byte-order mark");
}

TEST(NhnHostile, NotWellFormedIsRefusedWithItsLine) {
    auto m = the_codec().parse(
        "<MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\">\n"
        "<MsgInfo>\n</MsgHead>");
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, codec_errc::not_well_formed);
    EXPECT_EQ(m.error().line, 3);
    EXPECT_NE(m.error().message.find("mismatch"), std::string::npos) << m.error().message;
}

TEST(NhnHostile, TruncatedDocumentIsRefused) {
    std::string xml = read_file(shared(valid_message_path));
    expect_refused(std::string_view(xml).substr(0, xml.size() / 2), codec_errc::not_well_formed,
                   "");
}

TEST(NhnHostile, EmptyAndBinaryInputsAreRefused) {
    expect_refused("", codec_errc::not_well_formed, "empty document");
    expect_refused(std::string("\x89PNG\r\n\x1a\n\0\0\0", 11), codec_errc::not_well_formed, "");
    expect_refused("just text", codec_errc::not_well_formed, "Start tag expected");
}

TEST(NhnHostile, OversizedInputIsRefusedBeforeParsing) {
    parse_limits small;
    small.max_bytes = 1024;
    expect_refused(read_file(shared(valid_message_path)), codec_errc::too_large,
                   "over the limit of 1024", small);
}

TEST(NhnHostile, XIncludeIsNeverProcessed) {
    std::string xml = read_file(shared(valid_message_path));
    auto at = xml.find("<TekstNotatInnhold>");
    xml.insert(
        at,
        R"(<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>)");
    auto m = the_codec().parse(xml);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, codec_errc::schema_invalid);
    EXPECT_NE(m.error().message.find("XInclude}include"), std::string::npos) << m.error().message;
}

// Schema hints in a document must not make the validator fetch anything.
TEST(NhnHostile, SchemaLocationHintIsNotFetched) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(fd, 4), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/evil.xsd";

    std::string xml = read_file(shared(valid_message_path));
    auto at = xml.find("MsgHead-v1_2.xsd");
    ASSERT_NE(at, std::string::npos);
    xml.replace(at, 16, url);
    auto m = the_codec().parse(xml);
    EXPECT_TRUE(m) << m.error().what();
    int conn = ::accept(fd, nullptr, nullptr);
    EXPECT_LT(conn, 0) << "the validator connected to " << url;
    if (conn >= 0) ::close(conn);
    ::close(fd);
}

// A small mutation fuzz over a valid message: never a crash, every refusal has a reason.
TEST(NhnHostile, MutatedMessagesNeverCrash) {
    const std::string base = read_file(shared(valid_message_path));
    std::mt19937 rng(20261124);
    int refused = 0;
    for (int i = 0; i < 300; ++i) {
        std::string xml = base;
        int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            std::size_t pos = rng() % xml.size();
            switch (rng() % 4) {
                case 0:
                    xml[pos] = static_cast<char>(rng() % 256);
                    break;
                case 1:
                    xml.erase(pos, 1 + rng() % 16);
                    break;
                case 2:
                    xml.insert(pos, 1, "<>&\"'\0]"[rng() % 7]);
                    break;
                case 3:
                    xml.resize(pos);
                    break;
            }
            if (xml.empty()) xml = "<";
        }
        auto m = the_codec().parse(xml);
        if (!m) {
            ++refused;
            EXPECT_FALSE(m.error().message.empty());
        }
    }
    EXPECT_GT(refused, 200);
}

TEST(NhnHostile, SchemaDirectoryThatReachesOutIsRefused) {
    auto dir = std::filesystem::temp_directory_path() / ("nhn-xsd-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        std::ofstream(dir / "all-messages.xsd")
            << R"(<schema xmlns="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">
  <import namespace="urn:y" schemaLocation="http://127.0.0.1:9/y.xsd"/></schema>)";
    }
    try {
        schema_set s(dir);
        FAIL() << "a schema importing from the network was compiled";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no network"), std::string::npos) << e.what();
    }
    {
        std::ofstream(dir / "all-messages.xsd")
            << R"(<!DOCTYPE schema [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<schema xmlns="http://www.w3.org/2001/XMLSchema">&e;</schema>)";
    }
    try {
        schema_set s(dir);
        FAIL() << "a schema with a DTD was compiled";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("dtd_forbidden"), std::string::npos) << e.what();
    }
    std::filesystem::remove_all(dir);
    EXPECT_THROW({ schema_set s(dir); }, std::runtime_error);
}

}  // namespace
}  // namespace samband::nhn
