"""What the tests and the benchmarks share, outside the product: a throwaway copy of the project
(project.py), a stub OpenAI-compatible server (stub_server.py) and a fake teacher and judge
that write well-formed, table-grounded replies (fake_teacher.py). Not installed with the
package; importable from the project root."""
