"""EmoSEM data: ArtEmis and APOLO loaders, the synthetic demo set, pseudo masks, collation."""

from .apolo import APOLO_FEATURES, load_apolo, read_apolo_records, read_heat_map, read_mask, resize_mask
from .artemis import ARTEMIS_FEATURES, artemis_split_ids, load_artemis, read_artemis_csv
from .images import MissingFilesError, open_rgb
from .collate import make_collate_fn
from .pseudo_masks import (
    ClipScorer,
    SamRegionProposer,
    Stimulus,
    attach_pseudo_masks,
    generate_pseudo_masks,
    group_stimuli,
    heat_map,
)
from .paths import NameResolver, UnsafeNameError, check_name, safe_join
from .synthetic import SYNTHETIC_ELEMENTS, SYNTHETIC_FEATURES, draw_artwork, export_release, make_synthetic_artworks

__all__ = [
    "ClipScorer",
    "SamRegionProposer",
    "Stimulus",
    "attach_pseudo_masks",
    "generate_pseudo_masks",
    "group_stimuli",
    "heat_map",
    "make_collate_fn",
    "APOLO_FEATURES",
    "ARTEMIS_FEATURES",
    "SYNTHETIC_ELEMENTS",
    "SYNTHETIC_FEATURES",
    "MissingFilesError",
    "NameResolver",
    "UnsafeNameError",
    "artemis_split_ids",
    "check_name",
    "draw_artwork",
    "export_release",
    "load_apolo",
    "load_artemis",
    "make_synthetic_artworks",
    "open_rgb",
    "read_apolo_records",
    "read_artemis_csv",
    "read_heat_map",
    "read_mask",
    "resize_mask",
    "safe_join",
]
