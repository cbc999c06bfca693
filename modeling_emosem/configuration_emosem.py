"""EmoSEM configuration (filled in by the core-model work)."""

# The 8 emotions EmoSEM segments, in ArtEmis order (ArtEmis' 9th label, "something else", is dropped).
EMOTIONS = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
# All 9 ArtEmis labels, in the release's canonical order (index 0..8).
ARTEMIS_EMOTIONS = EMOTIONS + ("something else",)
