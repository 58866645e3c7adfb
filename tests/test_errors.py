from mimicbrush_cli.errors import first_line


def test_first_line_keeps_one_line_and_cuts_it():
    assert first_line(ValueError("bad shape\nmore detail")) == "bad shape"
    assert first_line(OSError("x" * 500)) == "x" * 200


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(OSError()) == "OSError"
    assert first_line(RuntimeError("  \n ")) == "RuntimeError"
