"""The model lifecycle: race sources, offline feature builds, data quality, training, registry, evaluation, model cards, Bento builds and `stratx serve`."""
