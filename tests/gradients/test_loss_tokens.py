from less_select.data.encode import IGNORE_INDEX, Encoded
from less_select.gradients.loss_tokens import with_loss_tokens


def test_sequence_labels_every_token_but_the_first_and_completion_is_unchanged():
    enc = Encoded(input_ids=[5, 6, 7, 8], labels=[IGNORE_INDEX, IGNORE_INDEX, 7, 8],
                  truncated=False, encoding="tulu")
    assert with_loss_tokens([enc], "completion")[0] is enc
    seq = with_loss_tokens([enc], "sequence")[0]
    assert seq.labels == [IGNORE_INDEX, 6, 7, 8]
    assert seq.input_ids == enc.input_ids and enc.labels == [IGNORE_INDEX, IGNORE_INDEX, 7, 8]
