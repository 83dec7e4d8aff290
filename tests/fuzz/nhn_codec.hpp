// The NHN codec the fuzz targets share: the shipped schemas, compiled once.
#pragma once

#include "nhn/codec/codec.hpp"

inline const samband::nhn::codec& fuzz_codec() {
    static const samband::nhn::codec c(
        samband::nhn::codec_config{SAMBAND_SOURCE_DIR "/plugins/nhn/xsd", {}});
    return c;
}
