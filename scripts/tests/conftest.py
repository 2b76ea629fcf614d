"""The tests of the stand-in and of the scripts: the stand-in's fixtures (``aws``, ``standin``,
``aws_client``, the ``own_standin`` marker, the session-wide secret scan) come from
scripts/lib/standin/pytest_plugin.py, as for iotinvoke's own tests in tests/.
"""
pytest_plugins = ["standin.pytest_plugin"]
