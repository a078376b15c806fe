"""Your transforms: plain Python modules, one function each, that turn a webhook into actions.

Copy an example, point a mapping at it in relay.yaml, and test it with `relay.testing`:

    mappings:
      - match: {path: github}
        transform: {module: transforms.github_pr_review, export: transform}

Modules are imported at start-up, relative to the folder of relay.yaml, and again by `relay reload`.
"""
