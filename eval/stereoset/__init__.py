"""StereoSet as an `evaluate` module: `evaluate.load("<path>/eval/stereoset")` loads stereoset.py
beside this file. The `vdata eval stereoset` command lives in vdata_hub.eval.stereoset_run."""
