// XML text helpers shared by the SOAP register client and the SVG report: escaping, no parsing.
#pragma once

#include <string>
#include <string_view>

namespace samband::codec {

// `s` made safe as XML character data or a quoted attribute value (& < > " ' escaped).
std::string xml_escape(std::string_view s);

}  // namespace samband::codec
