"""Verdicts of the generated Pydantic models: python verdicts.py PACKAGE_DIR CASES_JSON.

Each case is {"component", "event_type", "version", "instance"}; prints a JSON list with one
{"valid": bool, "error": str} per case. Instances are read as JSON text, as a consumer would.
"""
import importlib
import json
import pathlib
import sys

import pydantic

package_dir = pathlib.Path(sys.argv[1]).resolve()
sys.path.insert(0, str(package_dir.parent))
package = importlib.import_module(package_dir.name)
cases = json.loads(pathlib.Path(sys.argv[2]).read_text())
out = []
for case in cases:
    module = importlib.import_module(f"{package_dir.name}.{case['component']}")
    model = module.EVENTS[(case["event_type"], case["version"])]
    try:
        model.model_validate_json(json.dumps(case["instance"]))
        out.append({"valid": True, "error": ""})
    except pydantic.ValidationError as e:
        out.append({"valid": False, "error": str(e).splitlines()[1] if "\n" in str(e) else str(e)})
print(json.dumps(out))
