"""The machinery below the stages: reading and writing artifacts, the TFLite flatbuffer, the TFLite
Micro and LiteRT interpreters, Keras I/O, compression methods, metrics, boards, PlatformIO, QEMU,
ELF sizes and reporting. Stages call the engine; the engine never imports a stage or the dag.

Importing this package costs nothing: each module imports numpy, TensorFlow or PlatformIO inside
the functions that need them.
"""
