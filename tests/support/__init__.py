"""Integration-test support: local registries, images built in Python, and pushing them.

- registry.py      RegistryServer: Debian's docker-registry on 127.0.0.1 (plain, tls, basic, token, token_tls)
- token_server.py  TokenServer: the Docker token flow, ES256 JWTs, a log of the requests it got
- pki.py           a throwaway CA, serving certificates, the token signing key and its libtrust key ID
- images.py        layer tars, configs, manifests, indexes and layouts; the test scenarios
- push.py          push_raw (the distribution API), push_with_skopeo, push_scenarios
- fixtures.py      session-scoped pytest fixtures over all of the above
- trees.py         deep directory trees with stripped permissions, made one level at a time
"""
