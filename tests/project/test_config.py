import pytest

from toolbox.errors import ConfigError
from toolbox.layout import Layout
from toolbox.project.config import Mirror, UserConfig


def test_missing_file_means_defaults(tmp_path):
    config = UserConfig.load(tmp_path / "nope.toml")
    assert config.registry("docker.io").mirrors == ()


def test_mirrors_and_insecure(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[registries."docker.io"]\nmirrors = ["mirror.example.com", "http://127.0.0.1:5000/hub"]\n'
        '[registries."127.0.0.1:5000"]\ninsecure = true\n'
    )
    config = UserConfig.load(path)
    assert config.registry("docker.io").mirrors == (Mirror("mirror.example.com"),
                                                    Mirror("127.0.0.1:5000", "hub", "http"))
    assert config.registry("127.0.0.1:5000").insecure


@pytest.mark.parametrize(
    "text, words",
    [
        ("[registries", "not valid TOML"),
        ('[registries."x"]\nmirors = []', "unknown key 'mirors'"),
        ('[registries."x"]\ninsecure = "yes"', "'insecure' must be true or false"),
        ("colour = 1", "unknown top-level key"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, words):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        UserConfig.load(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_layout_from_env_overrides(tmp_path):
    layout = Layout.from_env({"TOOLBOX_HOME": str(tmp_path)})
    assert layout == Layout.under(tmp_path)
    assert layout.config_file == str(tmp_path / "config" / "config.toml")
    layout = Layout.from_env({"TOOLBOX_HOME": str(tmp_path), "TOOLBOX_CACHE_DIR": "/c",
                              "TOOLBOX_CONFIG": "/x.toml"})
    assert (layout.cache_dir == "/c" and layout.config_file == "/x.toml"
            and layout.data_dir == str(tmp_path / "data"))
    with pytest.raises(AttributeError):
        layout.cache_dir = "/elsewhere"


@pytest.mark.parametrize("xdg", [{}, {"XDG_CACHE_HOME": "/x/cache", "XDG_DATA_HOME": "/x/data",
                                      "XDG_CONFIG_HOME": "/x/config"}, {"XDG_CACHE_HOME": "relative"}])
def test_layout_defaults_follow_platformdirs(tmp_path, monkeypatch, xdg):
    import platformdirs

    env = {"HOME": str(tmp_path), **xdg}
    for key in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    layout = Layout.from_env(env)
    assert layout.cache_dir == platformdirs.user_cache_dir("toolbox")
    assert layout.data_dir == platformdirs.user_data_dir("toolbox")
    assert layout.config_dir == platformdirs.user_config_dir("toolbox")
