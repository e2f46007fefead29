"""`umamba import-model`: add an nnU-Net results folder or export zip to the local model store."""

from __future__ import annotations

import argparse

from umamba.paths import default_model_store
from umamba.progress import Reporter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a model folder (Trainer__Plans__Configuration), a results folder above it, "
                                       "or a zip made by nnUNetv2_export_model_to_zip")
    parser.add_argument("--name", default=None,
                        help="name in the store (default DATASET_TRAINER_CONFIGURATION; with several models in "
                             "the source, NAME_CONFIGURATION)")
    parser.add_argument("--configuration", "-c", default=None,
                        help="import only this configuration (e.g. 3d_fullres) when the source holds several")
    parser.add_argument("--force", action="store_true", help="replace a stored model of the same name")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="accept checkpoints that need more than plain weights to unpickle (this can run code "
                             "stored in the file: only for files you trust)")
    parser.add_argument("--store", default=None, help=f"model store folder (default {default_model_store()})")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from umamba.model_store import card_line, import_model

    store = args.store or default_model_store()
    reporter.stage("import", f"importing {args.source} into {store}")
    cards = import_model(args.source, store, name=args.name, configuration=args.configuration, force=args.force,
                         read_checkpoints=True, trust_checkpoint=args.trust_checkpoint)
    for card in cards:
        reporter.log(card_line(card))
    reporter.done([f"{store}/{c['name']}" for c in cards], cards=cards)
    return 0
