// Serialiser: rendered note → MsgHead 1.2 + Dialogmelding 1.1, validated before it leaves.
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <samband_test/tools.hpp>

#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

namespace samband::nhn {
namespace {

using namespace test;

constexpr const char* small_pdf_sha256 =
    "8b628fc6410a8617083a6a265c4d9ac6c8f501aa378d8137e9aae0403db95d39";

std::string pdf_meta(std::size_t size, const std::string& sha) {
    return R"({ "id": "a1", "filename": "henvisning.pdf", "media_type": "application/pdf", "size": )" +
           std::to_string(size) + R"(, "sha256": ")" + sha + R"(" })";
}

TEST(NhnSerializer, StartNoteWithoutAttachmentValidatesAndRoundTrips) {
    auto msg = the_codec().serialize(start_note(), {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_EQ(msg->message_type, "DIALOG_HELSEFAGLIG");
    EXPECT_TRUE(the_codec().validate(msg->xml));

    auto in = the_codec().parse(msg->xml);
    ASSERT_TRUE(in) << in.error().what();
    EXPECT_EQ(in->header.msg_type, "DIALOG_HELSEFAGLIG");
    EXPECT_EQ(in->header.msg_id, derive_uuid("delivery-1"));
    EXPECT_EQ(in->header.sender.her_id, "9900001");
    EXPECT_EQ(in->header.sender.org_nr, "999000001");
    EXPECT_EQ(in->header.sender.unit_her_id, "9900011");
    EXPECT_EQ(in->header.sender.person_hpr, "9911001");
    EXPECT_EQ(in->header.receiver.her_id, "9900100");
    EXPECT_EQ(in->header.receiver.person_her_id, "9900101");
    EXPECT_EQ(in->patient_id, "14839134623");
    EXPECT_EQ(in->patient_id_type, "FNR");
    EXPECT_EQ(in->dialog_version, "1.1");
    EXPECT_EQ(in->body_kind, "Notat");
    EXPECT_EQ(in->topic_code, "6");
    EXPECT_EQ(in->topic, "Oppstartsnotat fra Rask psykisk helsehjelp");
    EXPECT_EQ(in->author_hpr, "9911001");
    EXPECT_TRUE(in->ack_requested);
    EXPECT_FALSE(in->ref_to_parent.has_value());
    EXPECT_TRUE(in->attachments.empty());
}

TEST(NhnSerializer, NorwegianLettersSurviveUnchanged) {
    auto msg = the_codec().serialize(start_note(), {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    // Written as UTF-8 characters, not as character references.
    EXPECT_NE(msg->xml.find("Blåbærsyltetøy: æøå ÆØÅ."), std::string::npos);
    auto in = the_codec().parse(msg->xml);
    ASSERT_TRUE(in);
    EXPECT_EQ(in->text, "Årsak til kontakt\nSøvnvansker og bekymring. Blåbærsyltetøy: æøå ÆØÅ.");
}

TEST(NhnSerializer, PdfAttachmentIsBitExactWithMatchingSha256) {
    auto pdf = read_bytes(shared("samples/small.pdf"));
    auto note = parse_rendered_note(start_note_json("14839134623", "FNR", "",
                                                    pdf_meta(pdf.size(), small_pdf_sha256)))
                    .value();
    outgoing_attachment a{"a1", "", "", pdf};
    auto msg = the_codec().serialize(note, std::span(&a, 1), options());
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_NE(msg->xml.find("<MsgType V=\"A\" DN=\"Vedlegg\"/>"), std::string::npos);
    EXPECT_NE(msg->xml.find("<MimeType>application/pdf</MimeType>"), std::string::npos);
    EXPECT_NE(msg->xml.find("<Description>henvisning.pdf</Description>"), std::string::npos);

    auto in = the_codec().parse(msg->xml);
    ASSERT_TRUE(in) << in.error().what();
    ASSERT_EQ(in->attachments.size(), 1u);
    EXPECT_EQ(in->attachments[0].bytes, pdf);
    EXPECT_EQ(in->attachments[0].sha256, small_pdf_sha256);
    EXPECT_EQ(in->attachments[0].filename, "henvisning.pdf");
    EXPECT_EQ(in->attachments[0].mime_type, "application/pdf");
}

TEST(NhnSerializer, AttachmentWhoseBytesDoNotMatchTheEnvelopeIsRefused) {
    auto pdf = read_bytes(shared("samples/small.pdf"));
    auto note = parse_rendered_note(start_note_json("14839134623", "FNR", "",
                                                    pdf_meta(pdf.size(), std::string(64, '0'))))
                    .value();
    outgoing_attachment a{"a1", "", "", pdf};
    auto msg = the_codec().serialize(note, std::span(&a, 1), options());
    ASSERT_FALSE(msg);
    EXPECT_EQ(msg.error().code, codec_errc::attachment_mismatch);
    EXPECT_NE(msg.error().message.find("SHA-256"), std::string::npos);
}

TEST(NhnSerializer, EnvelopeAttachmentWithoutBytesIsRefused) {
    auto note = parse_rendered_note(
                    start_note_json("14839134623", "FNR", "", pdf_meta(3151, small_pdf_sha256)))
                    .value();
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_FALSE(msg);
    EXPECT_EQ(msg.error().code, codec_errc::attachment_mismatch);
    EXPECT_NE(msg.error().message.find("'a1'"), std::string::npos);
}

TEST(NhnSerializer, MediaTypeOutsideTheAllowedListIsRefused) {
    std::vector<std::uint8_t> exe{'M', 'Z', 0, 0};
    outgoing_attachment a{"", "tool.exe", "application/x-msdownload", exe};
    auto msg = the_codec().serialize(start_note(), std::span(&a, 1), options());
    ASSERT_FALSE(msg);
    EXPECT_EQ(msg.error().code, codec_errc::attachment_mismatch);
    EXPECT_NE(msg.error().message.find("application/x-msdownload"), std::string::npos);
}

TEST(NhnSerializer, DnrPatientGetsIdTypeDnr) {
    auto note = parse_rendered_note(start_note_json("57048806165", "DNR")).value();
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_NE(msg->xml.find("<Id>57048806165</Id>"), std::string::npos);
    EXPECT_NE(msg->xml.find(R"(<TypeId V="DNR" S="2.16.578.1.12.4.1.1.8116" DN="D-nummer"/>)"),
              std::string::npos);
    auto in = the_codec().parse(msg->xml);
    ASSERT_TRUE(in);
    EXPECT_EQ(in->patient_id_type, "DNR");
}

TEST(NhnSerializer, MissingIdTypeIsDerivedAndAWrongOneRefused) {
    auto derived = parse_rendered_note(start_note_json("57048806165", ""));
    ASSERT_TRUE(derived);
    EXPECT_EQ(derived->patient.id_type, "DNR");
    auto wrong = parse_rendered_note(start_note_json("57048806165", "FNR"));
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code, codec_errc::invalid_input);
    EXPECT_NE(wrong.error().message.find("D-number"), std::string::npos);
}

TEST(NhnSerializer, ForesporselStartsItsOwnConversation) {
    auto note = parse_rendered_note(start_note_json()).value();
    note.kind = "foresporsel";
    auto msg = the_codec().serialize(note, {}, options("req-1"));
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_EQ(msg->message_type, "DIALOG_FORESPORSEL");
    auto in = the_codec().parse(msg->xml);
    ASSERT_TRUE(in) << in.error().what();
    EXPECT_EQ(in->body_kind, "Foresporsel");
    ASSERT_TRUE(in->ref_to_parent.has_value());
    EXPECT_EQ(*in->ref_to_parent, derive_uuid("req-1"));
    EXPECT_EQ(*in->ref_to_conversation, derive_uuid("req-1"));
}

TEST(NhnSerializer, ForesporselKeepsGivenConversationRefs) {
    auto note =
        parse_rendered_note(
            start_note_json(
                "14839134623", "FNR",
                R"( "message_type": "DIALOG_FORESPORSEL", "conversation": { "ref_to_parent": "p-1", "ref_to_conversation": "c-1" },)"))
            .value();
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    auto in = the_codec().parse(msg->xml).value();
    EXPECT_EQ(in.header.msg_type, "DIALOG_FORESPORSEL");
    EXPECT_EQ(*in.ref_to_parent, "p-1");
    EXPECT_EQ(*in.ref_to_conversation, "c-1");
}

TEST(NhnSerializer, SvarCarriesConversationRefs) {
    auto note =
        parse_rendered_note(
            start_note_json(
                "14839134623", "FNR",
                R"( "conversation": { "ref_to_parent": "4f77040c-3610-4d17-bef1-76994ab2726b", "ref_to_conversation": "conv-9" },)"))
            .value();
    note.kind = "svar";
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_EQ(msg->message_type, "DIALOG_SVAR");
    EXPECT_NE(msg->xml.find("<RefToParent>4f77040c-3610-4d17-bef1-76994ab2726b</RefToParent>"),
              std::string::npos);
    EXPECT_NE(msg->xml.find("<RefToConversation>conv-9</RefToConversation>"), std::string::npos);
    auto in = the_codec().parse(msg->xml).value();
    EXPECT_EQ(in.header.msg_type, "DIALOG_SVAR");
    EXPECT_EQ(*in.ref_to_parent, "4f77040c-3610-4d17-bef1-76994ab2726b");
}

TEST(NhnSerializer, SvarWithoutConversationRefIsRefused) {
    auto note = start_note();
    note.kind = "svar";
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_FALSE(msg);
    EXPECT_EQ(msg.error().code, codec_errc::missing_field);
    EXPECT_NE(msg.error().message.find("ref_to_parent"), std::string::npos);
}

TEST(NhnSerializer, ReceiverMessageTypeWinsOverTheKind) {
    auto note = start_note();
    note.kind = "foresporsel";
    auto o = options();
    o.receiver_message_type = "DIALOG_HELSEFAGLIG";
    auto msg = the_codec().serialize(note, {}, o);
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_EQ(msg->message_type, "DIALOG_HELSEFAGLIG");
    auto in = the_codec().parse(msg->xml).value();
    EXPECT_EQ(in.topic_code, "8");  // 7322: Forespørsel om helseopplysninger
    o.receiver_message_type = "DIALOG_UNKNOWN";
    auto bad = the_codec().serialize(note, {}, o);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, codec_errc::invalid_input);
}

TEST(NhnSerializer, MsgIdIsStableForTheSameDelivery) {
    auto pdf = read_bytes(shared("samples/small.pdf"));
    auto note = parse_rendered_note(start_note_json("14839134623", "FNR", "",
                                                    pdf_meta(pdf.size(), small_pdf_sha256)))
                    .value();
    outgoing_attachment a{"a1", "", "", pdf};
    auto first = the_codec().serialize(note, std::span(&a, 1), options("delivery-42")).value();
    auto retry = the_codec().serialize(note, std::span(&a, 1), options("delivery-42")).value();
    auto other = the_codec().serialize(note, std::span(&a, 1), options("delivery-43")).value();
    EXPECT_EQ(first.msg_id, retry.msg_id);
    EXPECT_EQ(first.xml, retry.xml);  // byte-identical: GenDate comes from the note
    EXPECT_NE(first.msg_id, other.msg_id);
    EXPECT_EQ(derive_uuid("delivery-42"), first.msg_id);
    EXPECT_EQ(first.msg_id.size(), 36u);
}

TEST(NhnSerializer, SchemaViolationIsRefusedWithLineAndMessage) {
    auto o = options();
    o.gen_date = "yesterday";  // GenDate is xs:dateTime
    auto msg = the_codec().serialize(start_note(), {}, o);
    ASSERT_FALSE(msg);
    EXPECT_EQ(msg.error().code, codec_errc::schema_invalid);
    EXPECT_GT(msg.error().line, 1);
    EXPECT_NE(msg.error().message.find("GenDate"), std::string::npos) << msg.error().message;
    EXPECT_NE(msg.error().message.find("dateTime"), std::string::npos) << msg.error().message;
    // The value itself (it may be patient data or attachment base64) is never quoted.
    EXPECT_EQ(msg.error().message.find("yesterday"), std::string::npos) << msg.error().message;
    EXPECT_NE(msg.error().message.find("(value withheld)"), std::string::npos)
        << msg.error().message;
    // The unvalidated builder shows the bytes that were refused.
    auto raw = build_note_xml(start_note(), {}, o);
    ASSERT_TRUE(raw);
    EXPECT_FALSE(the_codec().validate(raw->xml));
}

TEST(NhnSerializer, MissingRequiredFieldIsNamedByPath) {
    std::string json = start_note_json();
    auto at = json.find(R"("her_id": "9900100")");
    ASSERT_NE(at, std::string::npos);
    json.replace(at, 19, R"("x": "1")");
    auto note = parse_rendered_note(json);
    ASSERT_FALSE(note);
    EXPECT_EQ(note.error().code, codec_errc::missing_field);
    EXPECT_EQ(note.error().message, "note.receiver.organisation.her_id is missing");
}

TEST(NhnSerializer, ControlCharactersAreReplacedNotFatal) {
    auto note = start_note();
    note.text = std::string("Linje 1\fLinje 2\x01");
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    auto in = the_codec().parse(msg->xml).value();
    EXPECT_EQ(in.text, "Linje 1 Linje 2");
}

TEST(NhnSerializer, MessageWithoutReceiverPersonGoesToTheOffice) {
    auto note = start_note();
    note.receiver_person.reset();
    auto msg = the_codec().serialize(note, {}, options());
    ASSERT_TRUE(msg) << msg.error().what();
    auto in = the_codec().parse(msg->xml).value();
    EXPECT_EQ(in.header.receiver.her_id, "9900100");
    EXPECT_TRUE(in.header.receiver.person_her_id.empty());
}

TEST(NhnSerializer, OneCodecServesManyThreads) {
    auto pdf = read_bytes(shared("samples/small.pdf"));
    const std::string incoming =
        read_file(shared("samples/dialogmelding/1.1/helsefaglig-dialog/samsvar-test-message.xml"));
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 40; ++i) {
                outgoing_attachment a{"", "vedlegg.pdf", "application/pdf", pdf};
                auto o = options("d-" + std::to_string(t) + "-" + std::to_string(i));
                auto msg = the_codec().serialize(start_note(), std::span(&a, 1), o);
                if (!msg || msg->msg_id != o.msg_id) ++failures;
                auto in = the_codec().parse(incoming);
                if (!in || in->attachments.size() != 1) ++failures;
                auto bad = the_codec().parse("<MsgHead>");
                if (bad) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
}

// Cross-check with the reference tool a receiver would use.
int run_xmllint(const std::string& xml) {
    std::string xmllint = samband::testing::find_tool("xmllint");
    if (xmllint.empty()) return -1;
    auto path = std::filesystem::temp_directory_path() /
                ("nhn-xmllint-" + std::to_string(::getpid()) + ".xml");
    {
        std::ofstream out(path, std::ios::binary);
        out << xml;
    }
    std::string cmd = xmllint + " --noout --nonet --schema " + std::string(NHN_XSD_DIR) +
                      "/all-messages.xsd " + path.string() + " 2>/dev/null";
    int rc = std::system(cmd.c_str());
    std::filesystem::remove(path);
    return rc;
}

TEST(NhnSerializer, XmllintAcceptsTheOutputAndRefusesABrokenOne) {
    SAMBAND_REQUIRE_TOOL("xmllint");
    auto pdf = read_bytes(shared("samples/small.pdf"));
    auto note = parse_rendered_note(start_note_json("14839134623", "FNR", "",
                                                    pdf_meta(pdf.size(), small_pdf_sha256)))
                    .value();
    outgoing_attachment a{"a1", "", "", pdf};
    auto msg = the_codec().serialize(note, std::span(&a, 1), options());
    ASSERT_TRUE(msg) << msg.error().what();
    EXPECT_EQ(run_xmllint(msg->xml), 0);

    auto o = options();
    o.gen_date = "yesterday";
    auto raw = build_note_xml(start_note(), {}, o).value();
    EXPECT_NE(run_xmllint(raw.xml), 0);
}

}  // namespace
}  // namespace samband::nhn
