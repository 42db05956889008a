"""Convert a stored model to other formats, prove each conversion, register the proven ones.

    truce convert NAME[:VERSION|@ALIAS] --to TARGET ...        (converters/cli.py)
      └─ service.convert_model: plan + check every route first (targets.py, closed table)
           └─ per target: runner.SubprocessRunner ─► python -m converters.worker
                 worker.execute: targets.Route.convert (torch_paths / tf_paths / onnx_paths)
                                 parity.verify through gateway.runtimes.open_runtime
           └─ passed (or --force): ModelStore.add_version(lineage=Lineage(parity=report))

Nothing heavy is imported by this package's top level: frameworks load inside the worker.
"""
