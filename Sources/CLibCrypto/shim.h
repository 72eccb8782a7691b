#ifndef TERN_CLIBCRYPTO_SHIM_H
#define TERN_CLIBCRYPTO_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#endif
