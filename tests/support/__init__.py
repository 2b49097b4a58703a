"""What the tests share: local registries, images built in Python and pushed to them, toolbox
installations of the tests' own, and what the host must give a test.

- installation.py  ToolboxUnderTest (one isolated toolbox: store, config, credentials), cli(), REPO
- fixtures.py      pytest fixtures over all of this: registries, pushed images, busybox, upstream
- markers.py       needs_userns, needs_fuse, needs_program(name), not_as_root, ...: each need, once
- host.py          probes of the host, and the one kind of skip CI=true lets through
- registry.py      RegistryServer: Debian's docker-registry on 127.0.0.1 (plain, tls, basic, token, token_tls)
- token_server.py  TokenServer: the Docker token flow, ES256 JWTs, a log of the requests it got
- pki.py           a throwaway CA, serving certificates, the token signing key and its libtrust key ID
- images.py        layer tars, configs, manifests, indexes and layouts; the test scenarios
- push.py          push_raw (the distribution API), push_with_skopeo, push_scenarios
- faults.py        FaultProxy: an HTTP proxy in front of a registry that fails, cuts, stalls or corrupts
- upstream.py      the recipes' upstream registries mirrored to the loopback one; images standing in for tools
- projects.py      Projects: two sibling projects pinning different jq versions, with jq's shim
- rootfs_modes.py  the three root filesystem modes of `toolbox run`, as marked pytest parameters
- hotpath.py       what the hot tier may import, judged from a launch's module report
- forkrun.py       many toolbox commands in one environment, each in a forked child
- other_user.py    a second local account's agent, for tests that attack toolbox as another user
- trees.py         deep directory trees with stripped permissions, made one level at a time
"""
