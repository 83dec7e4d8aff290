// samband: the command line (being wired; see the lead's work in progress).
#include <iostream>
int main() {
    std::cerr << "samband: not yet wired\n";
    return 1;
}
