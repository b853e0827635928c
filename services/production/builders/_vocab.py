"""A small WordPiece vocabulary shared by the BERT stand-ins: BERT's special tokens, then the words
of a few sentences (written for this project) and their single characters, so that any text
tokenizes without an unknown token for the letters it uses."""

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXT = (
    "the museum opened in 1901 and holds about 2,000 objects . world famous proudly amazing "
    "what is capital of france paris berlin germany example page title hello world "
    "query document : ? ! , - ' \" ( ) a an this that best greatest ever"
)


def words() -> list[str]:
    out = list(SPECIAL)
    for token in TEXT.split():
        if token not in out:
            out.append(token)
    chars = sorted({c for c in "abcdefghijklmnopqrstuvwxyz0123456789"})
    for c in chars:
        if c not in out:
            out.append(c)
        if f"##{c}" not in out:
            out.append(f"##{c}")
    return out


def write(path) -> None:
    path.write_text("".join(f"{w}\n" for w in words()))
