"""Front ends other than the command line: the local web page, the VapourSynth filter."""
