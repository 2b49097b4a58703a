"""Pull progress: a live per-layer display on a terminal, plain lines otherwise, or nothing."""

import sys
import threading
import time

from toolbox.ops.pull import NullProgress


def human_bytes(count):
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def counted(count, noun, plural=None):
    """'1 layer', '3 layers'."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


class PlainProgress(NullProgress):
    """One line per event, for logs and pipes. The first names the digest pulled once: not
    where the reference has it already, nor where the command prints it as its result
    (`digest_in_result`: `toolbox pull` prints REFERENCE@DIGEST on stdout), but always the
    manifest chosen from an index pulled by its digest, which nothing else shows."""

    def __init__(self, stream=None, digest_in_result=False):
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._digest_in_result = digest_in_result

    def _say(self, text):
        with self._lock:
            print(text, file=self._stream, flush=True)

    def resolved(self, reference, digest, platform, layers):
        new = [p for p in layers if not p.stored]
        if "@" in str(reference):
            named = "" if str(reference).endswith(f"@{digest}") else f", manifest {digest}"
        else:
            named = "" if self._digest_in_result else f", {digest}"
        self._say(f"Pulling {reference} ({platform}){named}")
        if new:
            self._say(f"{counted(len(layers), 'layer')}, {len(layers) - len(new)} already stored, "
                      f"{human_bytes(sum(p.descriptor.size for p in new))} to download")
        else:
            self._say(f"{_all_stored(layers)}: nothing to download")

    def layer_done(self, layer, stats):
        note = ("already stored by another pull" if stats is None
                else f"{stats.files} files, {human_bytes(stats.bytes)}")
        self._say(f"layer {layer.descriptor.digest.short}: done ({note})")


class TerminalProgress(NullProgress):
    """Redraws one line per layer and a total line, at most ten times a second."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._layers = []
        self._done = {}
        self._finished = set()
        self._drawn_lines = 0
        self._last_draw = 0.0
        self._started = time.monotonic()

    def resolved(self, reference, digest, platform, layers):
        with self._lock:
            print(f"Pulling {reference} ({platform})", file=self._stream)
            self._layers = [p for p in layers if not p.stored]
            self._started = time.monotonic()
            if not self._layers:  # no bar for nothing: a pull of an image stored whole
                print(f"  {_all_stored(layers)}", file=self._stream, flush=True)
                return
            self._draw(force=True)

    def layer_advanced(self, layer, done_bytes):
        with self._lock:
            self._done[layer.descriptor.digest] = done_bytes
            self._draw()

    def layer_done(self, layer, stats):
        with self._lock:
            self._done[layer.descriptor.digest] = layer.descriptor.size
            self._finished.add(layer.descriptor.digest)
            self._draw(force=True)

    def _draw(self, force=False):
        if not self._layers:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        lines = []
        for plan in self._layers:
            digest = plan.descriptor.digest
            done, total = self._done.get(digest, 0), plan.descriptor.size
            state = "done" if digest in self._finished else f"{human_bytes(done)} / {human_bytes(total)}"
            lines.append(f"  {digest.short}  {_bar(done, total)}  {state}")
        total_done = sum(self._done.get(p.descriptor.digest, 0) for p in self._layers)
        total = sum(p.descriptor.size for p in self._layers)
        rate = total_done / max(now - self._started, 1e-3)
        lines.append(f"  total         {_bar(total_done, total)}  {human_bytes(total_done)} / "
                     f"{human_bytes(total)}  {human_bytes(rate)}/s")
        out = "\x1b[F" * self._drawn_lines + "".join(f"\x1b[2K{line}\n" for line in lines)
        self._stream.write(out)
        self._stream.flush()
        self._drawn_lines = len(lines)


def _all_stored(layers):
    return ("its one layer is already stored" if len(layers) == 1
            else f"all {len(layers)} layers are already stored")


def _bar(done, total, width=20):
    filled = width if total <= 0 else min(width, int(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_for(quiet, stream=None, digest_in_result=False):
    stream = stream or sys.stderr
    if quiet:
        return NullProgress()
    if stream.isatty():
        return TerminalProgress(stream)
    return PlainProgress(stream, digest_in_result)
