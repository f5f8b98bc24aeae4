"""Imported by importing_thread's background thread; its import takes half a second."""

import time

time.sleep(0.5)
READY = True
