#include "abi_check.h"
