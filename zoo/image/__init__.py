"""Image tokenizers: FlexTok (1D tokens of flexible length), KARL, CAT."""
