#include "abi_check.h"
#include <samband/sdk.hpp>
