//! Drop-in compatibility with twemproxy: nutcracker.yml, flags, stats port, signals, texts.
