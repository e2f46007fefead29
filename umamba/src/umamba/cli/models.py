"""`umamba models`: list (or delete) the models in the local model store."""

from __future__ import annotations

import argparse
import json
import sys

from umamba.paths import default_model_store
from umamba.progress import Reporter
from umamba.remote import add_remote_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None, help=f"model store folder (default {default_model_store()})")
    parser.add_argument("--json", action="store_true", help="print the cards as one JSON list")
    parser.add_argument("--delete", metavar="NAME", default=None, help="remove this model from the store")
    add_remote_arguments(parser, job=False)
    parser.add_argument("--download", metavar="NAME", default=None,
                        help="with --server: fetch this model into the local store (checked like import-model)")
    parser.add_argument("--force", action="store_true", help="with --download: replace a local model of that name")


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    if args.server:
        from umamba.remote.jobs import models as remote_models

        return remote_models(args, reporter)
    if args.download:
        from umamba.errors import UserError

        raise UserError("--download needs --server URL")
    from umamba.model_store import delete_model, list_models

    store = args.store or default_model_store()
    if args.delete:
        delete_model(store, args.delete)
        reporter.done([], deleted=args.delete)
        return 0
    show_cards(list_models(store), args, reporter, f"{store}/", store=str(store),
               empty=f"no models in {store} (add one with `umamba import-model SOURCE`)")
    return 0


def show_cards(cards: list[dict], args: argparse.Namespace, reporter: Reporter, prefix: str, empty: str,
               **fields) -> None:
    """The listing: a `done` event (--progress-json), a JSON list (--json) or one line per model."""
    from umamba.model_store import card_line

    if args.progress_json:
        reporter.done([f"{prefix}{c['name']}" for c in cards], models=cards, **fields)
    elif args.json:
        sys.stdout.write(json.dumps(cards, indent=2) + "\n")
    elif not cards:
        print(empty)
    else:
        for card in cards:
            print(card_line(card))
