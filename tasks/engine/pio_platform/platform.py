"""doit-tinyml's offline PlatformIO platform: bare-metal Cortex-M with the system's arm-none-eabi-gcc."""
from platformio.public import PlatformBase


class TinymlarmPlatform(PlatformBase):
    def is_embedded(self):
        return True
