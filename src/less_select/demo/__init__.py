"""``less-select demo``: a synthetic task pool (``tasks``), a briefly pretrained tiny model
(``pretrain``), exact-match evaluation (``evaluate``) and the report folder (``report``)."""
