"""What the app shows, as engine functions: noise maps, Table 8 decoding, the pi-noise meter."""
