"""Every on-disk location toolbox uses, decided once and passed around.

Nothing else in toolbox joins path strings for its own files: it asks a Layout. Paths are plain
strings (not pathlib) because the launch path imports this module, and pathlib alone costs ~17 ms.

Where things live (platformdirs' directories unless overridden):
- cache dir: the content store (blobs, unpacked layers, image records). Everything there can be
  pulled again.
- data dir: what cannot be re-created: named volumes, kept containers, trust decisions.
- config dir: config.toml (registries, mirrors) and the user's own recipes.

Environment overrides, so tests and unusual setups stay isolated: TOOLBOX_HOME puts all three
under one directory; TOOLBOX_CACHE_DIR, TOOLBOX_DATA_DIR, TOOLBOX_CONFIG_DIR override one each;
TOOLBOX_CONFIG names the config file itself. Without overrides the directories are
platformdirs' (the XDG base directories on Linux), computed here without importing platformdirs.
"""

import os

APP_NAME = "toolbox"


def shipped_dir(name):
    """A folder of data shipped with toolbox (recipes/, shims/): installed, inside the package
    (pyproject maps it there); in a checkout, at the top, beside the package."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, name)
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), name)


def _xdg_dir(env, variable, default_below_home):
    """platformdirs' rule on Linux (the XDG base directory spec), without importing platformdirs
    (~30 ms) on the launch path; tests/test_config.py checks the two agree."""
    value = env.get(variable, "").strip()
    if value and os.path.isabs(value):
        return value
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), default_below_home)


class Layout:
    __slots__ = ("cache_dir", "data_dir", "config_dir", "config_file")

    def __init__(self, cache_dir, data_dir, config_dir, config_file=None):
        set_ = object.__setattr__
        set_(self, "cache_dir", os.fspath(cache_dir))
        set_(self, "data_dir", os.fspath(data_dir))
        set_(self, "config_dir", os.fspath(config_dir))
        set_(self, "config_file", os.fspath(config_file or os.path.join(config_dir, "config.toml")))

    def __setattr__(self, name, value):
        raise AttributeError("Layout is immutable")

    def __repr__(self):
        return (f"Layout(cache_dir={self.cache_dir!r}, data_dir={self.data_dir!r}, "
                f"config_dir={self.config_dir!r})")

    def __eq__(self, other):
        return (isinstance(other, Layout)
                and all(getattr(self, s) == getattr(other, s) for s in self.__slots__))

    def __hash__(self):
        return hash(tuple(getattr(self, s) for s in self.__slots__))

    @classmethod
    def under(cls, root):
        """Everything below one directory (tests, TOOLBOX_HOME)."""
        root = os.fspath(root)
        return cls(os.path.join(root, "cache"), os.path.join(root, "data"), os.path.join(root, "config"))

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        home = env.get("TOOLBOX_HOME")
        base = cls.under(home) if home else None

        def pick(var, attr, xdg_var, xdg_default):
            if env.get(var):
                return env[var]
            if base is not None:
                return getattr(base, attr)
            return os.path.join(_xdg_dir(env, xdg_var, xdg_default), APP_NAME)

        return cls(
            cache_dir=pick("TOOLBOX_CACHE_DIR", "cache_dir", "XDG_CACHE_HOME", ".cache"),
            data_dir=pick("TOOLBOX_DATA_DIR", "data_dir", "XDG_DATA_HOME", ".local/share"),
            config_dir=pick("TOOLBOX_CONFIG_DIR", "config_dir", "XDG_CONFIG_HOME", ".config"),
            config_file=env.get("TOOLBOX_CONFIG") or None,
        )

    # -- the content store (cache dir) -------------------------------------------------------
    @property
    def store_dir(self):
        return os.path.join(self.cache_dir, "store")

    @property
    def blobs_dir(self):
        return os.path.join(self.store_dir, "blobs")

    def blob_path(self, digest):
        """A verified blob (manifest, index, config), keyed like an OCI layout: blobs/<alg>/<hex>."""
        return os.path.join(self.blobs_dir, digest.algorithm, digest.hex)

    @property
    def layers_dir(self):
        return os.path.join(self.store_dir, "layers")

    def layer_dir(self, diff_id):
        """An unpacked layer, keyed by its diff_id (the digest of the uncompressed tar), so the same
        layer compressed two ways is stored once. Holds `tree/` (the files, with overlay-style
        whiteouts) and `layer.json`."""
        return os.path.join(self.layers_dir, diff_id.algorithm, diff_id.hex)

    def layer_tree(self, diff_id):
        return os.path.join(self.layer_dir(diff_id), "tree")

    @property
    def images_dir(self):
        """One record per stored image reference."""
        return os.path.join(self.store_dir, "images")

    @property
    def tmp_dir(self):
        """Work in progress. Same filesystem as the store, so finished work is renamed into place."""
        return os.path.join(self.store_dir, "tmp")

    @property
    def plans_dir(self):
        """Run plans: what `toolbox run IMAGE` needs, precomputed (marshal), so the launch path
        reads one small file instead of parsing references, manifests and configs."""
        return os.path.join(self.store_dir, "plans")

    @property
    def tool_plans_dir(self):
        """Tool plans (hot/plans.py): what `toolbox run TOOL` and shims need from recipes, pins
        and the lock, precomputed per pins file and tool."""
        return os.path.join(self.store_dir, "toolplans")

    @property
    def shims_dir(self):
        """Executable shims (`toolbox shim install`), put first on PATH by `toolbox shell-init`."""
        return os.path.join(self.data_dir, "shims")

    def run_plan_path(self, image_text):
        # Keyed by the text the user typed, hex-encoded: no parsing and no quoting module needed.
        return os.path.join(self.plans_dir, image_text.encode("utf-8", "surrogateescape").hex() + ".plan")

    @property
    def scratch_mountpoint(self):
        """An empty directory the runtime mounts its scratch tmpfs on, inside its own mount
        namespace (invisible outside)."""
        return os.path.join(self.store_dir, "mnt")

    @property
    def flat_dir(self):
        """Flattened images, made only where overlayfs cannot be used (read-only root mode)."""
        return os.path.join(self.store_dir, "flat")

    @property
    def locks_dir(self):
        return os.path.join(self.store_dir, "locks")

    @property
    def runs_dir(self):
        """One record per running tool, listing the layers it stands on (inuse.py)."""
        return os.path.join(self.store_dir, "runs")

    @property
    def store_lock(self):
        """Shared by pulls and runs, exclusive for garbage collection."""
        return os.path.join(self.locks_dir, "store.lock")

    # -- the user's state (data dir) ---------------------------------------------------------
    @property
    def volumes_dir(self):
        return os.path.join(self.data_dir, "volumes")

    def volume_data(self, name):
        """A named volume's content (its directory may later hold metadata beside _data)."""
        return os.path.join(self.volumes_dir, name, "_data")

    @property
    def containers_dir(self):
        return os.path.join(self.data_dir, "containers")

    @property
    def known_projects_dir(self):
        """One small file per project whose toolbox.lock toolbox has read here (usage.py), so
        that `prune --unused`, `df` and `images` know which locks use which images."""
        return os.path.join(self.data_dir, "projects")

    @property
    def last_runs_dir(self):
        """What each pinned tool last ran by, per pins file (lastrun.py)."""
        return os.path.join(self.data_dir, "last-runs")

    # -- configuration ------------------------------------------------------------------------
    @property
    def user_recipes_dir(self):
        return os.path.join(self.config_dir, "recipes")
