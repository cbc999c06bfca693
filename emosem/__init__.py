"""EmoSEM library code beyond the Hub model folder: demo, training, evaluation, visualisation, CLI."""
