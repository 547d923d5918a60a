"""PASCAL VOC 2007 as a two-class set: horse vs everything else (FCDD's Clever Hans experiment).

Layout under the data root (the official tarballs unpacked):

    VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    VOCdevkit/VOC2007/Annotations/<id>.xml
    VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt

An image is 'horse' (label 1, anomaly 1) when any annotated object in its XML is a horse, difficult or not;
otherwise 'other' (0). Images have various sizes and are resized to ``size`` x ``size`` without cropping.
"""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

from .catalog import DATASETS
from .core import CorruptImageError, DatasetMissingError, ImageSet
from .folders import Listing, decode_set


def _base(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2007"


def has_horse(xml_path: Path) -> bool:
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as e:
        raise CorruptImageError.build(xml_path, f"invalid XML ({e})") from e
    return any((o.findtext("name") or "").strip().lower() == "horse" for o in tree.getroot().iter("object"))


def list_voc(split: str, root: Path) -> Listing:
    base = _base(root)
    ids_file = base / "ImageSets" / "Main" / f"{split}.txt"
    info = DATASETS["voc2007"]
    if not ids_file.exists():
        raise DatasetMissingError.build("voc2007", root, [ids_file], info.source, info.layout)
    ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()]
    paths = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    xmls = [base / "Annotations" / f"{i}.xml" for i in ids]
    absent = [p for pair in zip(paths, xmls) for p in pair if not p.exists()]
    if absent:
        raise DatasetMissingError.build("voc2007", root, absent, info.source, info.layout)
    return Listing(paths, [int(has_horse(x)) for x in xmls], list(info.classes))


def load_voc(dataset: str, split: str, root: Path, size=None, channels=None, skip_corrupt=False, **_) -> ImageSet:
    listing = list_voc(split, root)
    images = decode_set(dataset, listing.paths, listing.labels, listing.classes, size, channels or 3,
                        skip_corrupt=skip_corrupt)
    return dataclasses.replace(images, anomaly=images.labels.clone())
