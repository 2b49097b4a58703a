"""How the commands that list things show them: an aligned table for people, and with --json
the same listing as JSON. Every listing command renders through here, so they all look alike."""

import json


def print_json(value):
    print(json.dumps(value, indent=2, sort_keys=True))


def print_table(rows):
    """`rows` (the header first, if any) in columns two spaces apart, without trailing blanks."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_listing(items, as_json, header, row, to_json=None):
    """`items` as a table of `header` and `row(item)` for each, or with `as_json` as a JSON list
    of `to_json(item)` (by default the item's own to_json())."""
    if as_json:
        print_json([to_json(item) if to_json else item.to_json() for item in items])
    else:
        print_table([header] + [row(item) for item in items])


def human_duration(seconds):
    """'12 seconds', '5 minutes', '3 hours', '2 days': the largest whole unit, as docker's ps says it."""
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"
