"""Imported once by the clip cache's fork server (`worker_pool`): dlib's models loaded
there (the 68-point predictor takes over 2 s to read) are inherited by every worker the
server forks, instead of each worker of each build reading its own."""

from mer.preprocess.faces import dlib_models

dlib_models()
