"""Example handlers users recognise: heavy, leaky, crashy, slow, and a clean baseline."""
