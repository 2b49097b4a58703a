"""The one renderer of every listing command: an aligned table, or the same items as JSON."""

import json

from toolbox.cli.render import print_listing, print_table


class Item:
    def __init__(self, name, size):
        self.name, self.size = name, size

    def to_json(self):
        return {"size": self.size, "name": self.name}


ITEMS = [Item("jq", 3), Item("python", 1200)]


def test_a_table_is_aligned_in_columns_without_trailing_blanks(capsys):
    print_table([("NAME", "SIZE", "NOTE"), ("jq", 3, ""), ("python", 1200, "big")])
    assert capsys.readouterr().out == "NAME    SIZE  NOTE\njq      3\npython  1200  big\n"


def test_a_listing_is_a_table_or_its_items_as_json(capsys):
    print_listing(ITEMS, False, ("NAME", "SIZE"), lambda item: (item.name, item.size))
    assert capsys.readouterr().out == "NAME    SIZE\njq      3\npython  1200\n"
    print_listing(ITEMS, True, ("NAME", "SIZE"), lambda item: (item.name, item.size))
    out = capsys.readouterr().out
    assert json.loads(out) == [{"name": "jq", "size": 3}, {"name": "python", "size": 1200}]
    assert out.index('"name"') < out.index('"size"')  # keys sorted, as every --json prints them


def test_an_empty_listing_is_its_header_or_an_empty_list(capsys):
    print_listing([], False, ("NAME", "SIZE"), None)
    print_listing([], True, ("NAME", "SIZE"), None, to_json=dict)
    assert capsys.readouterr().out == "NAME  SIZE\n[]\n"
