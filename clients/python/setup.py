"""Builds the lensd package with its gRPC stubs generated from the repository's proto/ folder
(grpc_tools.protoc), so that the stubs always match the server they were built beside."""
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


class BuildPyWithStubs(build_py):
    """build_py, then protoc for proto/lensd/v1/*.proto into <build>/lensd/v1/."""

    def run(self):
        super().run()
        import importlib.resources

        from grpc_tools import protoc

        if not (PROTO / "lensd" / "v1").is_dir():
            raise RuntimeError(f"{PROTO}/lensd/v1 not found: build the client from the lensd "
                               "repository (pip install ./clients/python)")
        out = pathlib.Path(self.build_lib)
        protos = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "lensd" / "v1").glob("*.proto"))
        well_known = str(importlib.resources.files("grpc_tools") / "_proto")
        args = ["grpc_tools.protoc", f"-I{PROTO}", f"-I{well_known}", f"--python_out={out}",
                f"--pyi_out={out}", f"--grpc_python_out={out}", *protos]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on " + " ".join(protos))
        (out / "lensd" / "v1" / "__init__.py").write_text('"""Generated from proto/lensd/v1."""\n')


setup(cmdclass={"build_py": BuildPyWithStubs})
