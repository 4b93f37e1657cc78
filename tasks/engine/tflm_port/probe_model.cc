// doit-tinyml's size probe: a stand-in model array (its own translation unit, see probe_main.cpp).
#ifndef TINYML_PROBE_MODEL_BYTES
#define TINYML_PROBE_MODEL_BYTES 2048
#endif
alignas(16) extern const unsigned char g_model[TINYML_PROBE_MODEL_BYTES] = {0x1c, 0, 0, 0, 'T', 'F', 'L', '3'};
extern const unsigned int g_model_len = TINYML_PROBE_MODEL_BYTES;
