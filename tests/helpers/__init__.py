"""What several test modules share: tiny models, test clips, a fake corpus, a served page,
the VapourSynth venv. Test modules import from here, never from each other."""
