"""Root conftest: the perfkit plugin itself loads through its pytest11 entry point."""

pytest_plugins = ["pytester"]
