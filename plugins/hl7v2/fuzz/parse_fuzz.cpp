// libFuzzer target for the HL7 v2 parser, batch parser, inbound mapping, ACK reader and MLLP
// reader.
// Build: clang++ -fsanitize=fuzzer,address,undefined (cmake -DSAMBAND_FUZZ=ON with clang).
#include "hl7v2/codec/ack.hpp"
#include "hl7v2/codec/mapping.hpp"
#include "hl7v2/codec/message.hpp"
#include "hl7v2/codec/mllp.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace samband::hl7v2;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    parse_options opt;
    opt.lim.max_message_bytes = 1 << 20;
    auto m = parse(in, opt);
    if (m && m->seps.escape && m->seps.subcomponent) {
        // What parses must serialise and parse again to the same tree.
        std::string out = serialize(*m);
        auto again = parse(out, opt);
        if (!again) __builtin_trap();
        if (serialize(*again) != out) __builtin_trap();
        (void)read_ack(*m);
        inbound_options io;
        io.allow_synthetic_ids = true;
        (void)map_inbound(*m, io);
        message ack = build_ack(&*m, ack_code::AE, "x", nullptr);
        (void)serialize(ack);
    }
    (void)parse_batch(in, opt);
    mllp::reader r(4096);
    r.feed(in);
    std::string frame;
    for (int i = 0; i < 1000; ++i) {
        auto st = r.next(frame);
        if (st == mllp::reader::status::need_more || st == mllp::reader::status::too_large) break;
    }
    return 0;
}
