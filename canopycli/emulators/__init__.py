"""Local emulators of Deployteq on loopback, for trying canopycli and for tests."""
