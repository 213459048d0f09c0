"""The in-repo BERT encoder: model, tokenizer, data, training, embedding, checkpoint io."""
