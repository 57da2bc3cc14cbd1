#!/usr/bin/python3
"""Summarise meson test logs as the plain closing line 'N passed, N failed'.

A gtest binary counts each of its test cases (from the XML report meson asks it to write);
any other test (shell end-to-end tests) counts once. A binary that crashed before writing its
report counts as one failure. Exit status 0 only when nothing failed.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET


def gtest_counts(xml_path):
    root = ET.parse(xml_path).getroot()
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.get("result") == "skipped" or case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main(paths):
    passed = failed = skipped = 0
    failures = []
    for path in paths:
        if not os.path.exists(path):
            failures.append(f"{path}: missing (tests did not run)")
            failed += 1
            continue
        builddir = os.path.dirname(os.path.dirname(path))
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                t = json.loads(line)
                name, result = t["name"], t["result"]
                # meson runs protocol-gtest tests with --gtest_output=xml:<name>.xml in the
                # build directory; scripts/test removes old reports before the run.
                xml = os.path.join(builddir, name.split(" / ")[-1] + ".xml")
                if xml and os.path.exists(xml):
                    p, fl, s = gtest_counts(xml)
                    if result not in ("OK", "EXPECTEDFAIL", "SKIP") and fl == 0:
                        fl = 1  # crashed or timed out after its report
                    passed, failed, skipped = passed + p, failed + fl, skipped + s
                    if fl:
                        failures.append(f"{name}: {fl} failing case(s) [{result}]")
                elif result == "OK" or result == "EXPECTEDFAIL":
                    passed += 1
                elif result == "SKIP":
                    skipped += 1
                else:
                    failed += 1
                    failures.append(f"{name}: {result}")
    for f in failures:
        print("FAILED:", f)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
