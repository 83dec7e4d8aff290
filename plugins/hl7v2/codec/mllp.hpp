// MLLP framing (HL7 v2 Minimal Lower Layer Protocol): <VT> message <FS><CR>, with limits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace samband::hl7v2::mllp {

inline constexpr char start_block = 0x0b;
inline constexpr char end_block = 0x1c;
inline constexpr char carriage_return = 0x0d;

// Wraps one message in an MLLP frame.
inline std::string frame(std::string_view message) {
    std::string out;
    out.reserve(message.size() + 3);
    out.push_back(start_block);
    out.append(message);
    out.push_back(end_block);
    out.push_back(carriage_return);
    return out;
}

// Cuts frames out of a byte stream. Feed bytes as they arrive, then call next() until it says
// need_more. Whitespace between frames is ignored; other bytes outside a frame are junk (reported
// once per run, then skipped up to the next <VT>). A frame longer than max_frame is an error that
// ends the stream: the reader cannot find the next frame boundary safely.
class reader {
public:
    enum class status { need_more, frame, junk, too_large };

    explicit reader(std::size_t max_frame) : max_frame_(max_frame) {}

    void feed(std::string_view bytes) { buf_.append(bytes); }

    // On `frame`, `out` holds the message (without the framing bytes). On `junk`, `out` holds
    // the count of skipped bytes as text. On `too_large` the reader is finished.
    status next(std::string& out) {
        if (failed_) return status::too_large;
        for (;;) {
            if (!in_frame_) {
                std::size_t skipped = 0;
                while (pos_ < buf_.size() && buf_[pos_] != start_block) {
                    char c = buf_[pos_];
                    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') ++skipped;
                    ++pos_;
                }
                compact();
                if (skipped) {
                    out = std::to_string(skipped);
                    return status::junk;
                }
                if (pos_ >= buf_.size()) return status::need_more;
                in_frame_ = true;
                ++pos_;
                start_ = pos_;
                scan_ = pos_;
            }
            std::size_t fs = buf_.find(end_block, scan_);
            if (fs == std::string::npos) {
                scan_ = buf_.size();
                if (buf_.size() - start_ > max_frame_) {
                    failed_ = true;
                    buf_.clear();
                    return status::too_large;
                }
                return status::need_more;
            }
            if (fs - start_ > max_frame_) {
                failed_ = true;
                buf_.clear();
                return status::too_large;
            }
            // <FS> is followed by <CR>; a <CR> that arrives later is whitespace between frames.
            out.assign(buf_, start_, fs - start_);
            pos_ = fs + 1;
            if (pos_ < buf_.size() && buf_[pos_] == carriage_return) ++pos_;
            in_frame_ = false;
            compact();
            return status::frame;
        }
    }

    // Bytes held for an unfinished frame (for idle/slow-sender decisions).
    std::size_t pending() const { return buf_.size() - pos_; }
    bool in_frame() const { return in_frame_; }

private:
    void compact() {
        if (pos_ > 64 * 1024 || pos_ == buf_.size()) {
            std::size_t shift = pos_;
            buf_.erase(0, shift);
            pos_ = 0;
            if (in_frame_) {
                start_ -= shift;
                scan_ -= shift;
            }
        }
    }

    std::size_t max_frame_;
    std::string buf_;
    std::size_t pos_ = 0, start_ = 0, scan_ = 0;
    bool in_frame_ = false;
    bool failed_ = false;
};

}  // namespace samband::hl7v2::mllp
