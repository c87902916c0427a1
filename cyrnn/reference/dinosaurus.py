"""The course's "Dinosaurus Island - character-level language model" in plain
NumPy (docs/contract.md §9): the assignment's utils and its exercise functions,
with its signatures, parameter keys (the hidden bias is ``b``), return values
and use of NumPy's global random state. The baseline `cyrnn.dinosaurus` is
tested and benchmarked against.
"""
import numpy as np

__all__ = [
    "softmax", "smooth", "print_sample", "get_sample", "get_initial_loss",
    "initialize_parameters", "rnn_step_forward", "rnn_step_backward", "update_parameters",
    "rnn_forward", "rnn_backward", "clip", "sample", "optimize", "model",
]


# ------------------------------------------------------------------- utils

def softmax(x):
    """The course's softmax: the global max is subtracted (a column vector)."""
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


def smooth(loss, cur_loss):
    """Exponential moving average of the loss (weight 0.999 on the past)."""
    return loss * 0.999 + cur_loss * 0.001


def get_sample(sample_ix, ix_to_char):
    """The sampled characters as a string, the first one capitalised."""
    txt = "".join(ix_to_char[ix] for ix in sample_ix)
    return txt[0].upper() + txt[1:]


def print_sample(sample_ix, ix_to_char):
    """Prints get_sample's string (which ends with the newline sampled last)."""
    print(get_sample(sample_ix, ix_to_char), end="")


def get_initial_loss(vocab_size, seq_length):
    """The loss of a uniform guess over seq_length characters."""
    return -np.log(1.0 / vocab_size) * seq_length


def initialize_parameters(n_a, n_x, n_y):
    """Small random weights (NumPy's global state seeded with 1), zero biases."""
    np.random.seed(1)
    Wax = np.random.randn(n_a, n_x) * 0.01
    Waa = np.random.randn(n_a, n_a) * 0.01
    Wya = np.random.randn(n_y, n_a) * 0.01
    b = np.zeros((n_a, 1))
    by = np.zeros((n_y, 1))
    return {"Wax": Wax, "Waa": Waa, "Wya": Wya, "b": b, "by": by}


def rnn_step_forward(parameters, a_prev, x):
    """(a_next, p_t): the next hidden state and the next character's probabilities."""
    Waa, Wax, Wya = parameters["Waa"], parameters["Wax"], parameters["Wya"]
    by, b = parameters["by"], parameters["b"]
    a_next = np.tanh(np.dot(Wax, x) + np.dot(Waa, a_prev) + b)
    p_t = softmax(np.dot(Wya, a_next) + by)
    return a_next, p_t


def rnn_step_backward(dy, gradients, parameters, x, a, a_prev):
    """Adds one step's contributions to `gradients` (and sets its da_next)."""
    gradients["dWya"] += np.dot(dy, a.T)
    gradients["dby"] += dy
    da = np.dot(parameters["Wya"].T, dy) + gradients["da_next"]
    daraw = (1 - a * a) * da
    gradients["db"] += daraw
    gradients["dWax"] += np.dot(daraw, x.T)
    gradients["dWaa"] += np.dot(daraw, a_prev.T)
    gradients["da_next"] = np.dot(parameters["Waa"].T, daraw)
    return gradients


def update_parameters(parameters, gradients, lr):
    """Gradient descent in place: p += -lr·dp."""
    parameters["Wax"] += -lr * gradients["dWax"]
    parameters["Waa"] += -lr * gradients["dWaa"]
    parameters["Wya"] += -lr * gradients["dWya"]
    parameters["b"] += -lr * gradients["db"]
    parameters["by"] += -lr * gradients["dby"]
    return parameters


def rnn_forward(X, Y, a0, parameters, vocab_size=27):
    """(loss, cache): the summed cross-entropy of predicting Y[t] after X[..t]
    (X[t] None: the zero input); cache = (y_hat, a, x), dicts by step (a[-1]: a0)."""
    x, a, y_hat = {}, {}, {}
    a[-1] = np.copy(a0)
    loss = 0
    for t in range(len(X)):
        x[t] = np.zeros((vocab_size, 1))
        if X[t] is not None:
            x[t][X[t]] = 1
        a[t], y_hat[t] = rnn_step_forward(parameters, a[t - 1], x[t])
        loss -= np.log(y_hat[t][Y[t], 0])
    return loss, (y_hat, a, x)


def rnn_backward(X, Y, parameters, cache):
    """(gradients, a): the loss's gradients by backpropagation through time."""
    y_hat, a, x = cache
    gradients = {"dWax": np.zeros_like(parameters["Wax"]),
                 "dWaa": np.zeros_like(parameters["Waa"]),
                 "dWya": np.zeros_like(parameters["Wya"]),
                 "db": np.zeros_like(parameters["b"]), "dby": np.zeros_like(parameters["by"]),
                 "da_next": np.zeros_like(a[0])}
    for t in reversed(range(len(X))):
        dy = np.copy(y_hat[t])
        dy[Y[t]] -= 1
        gradients = rnn_step_backward(dy, gradients, parameters, x[t], a[t], a[t - 1])
    return gradients, a


# --------------------------------------------------------------- exercises

def clip(gradients, maxValue):
    """The five gradients clipped to [-maxValue, maxValue] in place; a new dict of them."""
    dWaa, dWax, dWya = gradients["dWaa"], gradients["dWax"], gradients["dWya"]
    db, dby = gradients["db"], gradients["dby"]
    for gradient in (dWax, dWaa, dWya, db, dby):
        np.clip(gradient, -maxValue, maxValue, out=gradient)
    return {"dWaa": dWaa, "dWax": dWax, "dWya": dWya, "db": db, "dby": dby}


def sample(parameters, char_to_ix, seed):
    """Indices of characters sampled one by one from the model, starting from a
    zero input and state, until the newline (or 50 characters, then a newline
    is appended). Step k reseeds NumPy's global state with seed + 2k."""
    Waa, Wax, Wya = parameters["Waa"], parameters["Wax"], parameters["Wya"]
    by, b = parameters["by"], parameters["b"]
    vocab_size = by.shape[0]
    n_a = Waa.shape[1]
    x = np.zeros((vocab_size, 1))
    a_prev = np.zeros((n_a, 1))
    indices = []
    idx = -1
    counter = 0
    newline_character = char_to_ix["\n"]
    while idx != newline_character and counter != 50:
        a = np.tanh(np.dot(Wax, x) + np.dot(Waa, a_prev) + b)
        z = np.dot(Wya, a) + by
        y = softmax(z)
        np.random.seed(counter + seed)
        idx = np.random.choice(range(len(y)), p=y.ravel())
        indices.append(idx)
        x = np.zeros((vocab_size, 1))
        x[idx] = 1
        a_prev = a
        seed += 1
        counter += 1
    if counter == 50:
        indices.append(char_to_ix["\n"])
    return indices


def optimize(X, Y, a_prev, parameters, learning_rate=0.01):
    """One step of SGD on the sequence X -> Y: (loss, clipped gradients, last
    hidden state); the parameters are updated in place."""
    loss, cache = rnn_forward(X, Y, a_prev, parameters)
    gradients, a = rnn_backward(X, Y, parameters, cache)
    gradients = clip(gradients, 5)
    parameters = update_parameters(parameters, gradients, learning_rate)
    return loss, gradients, a[len(X) - 1]


def model(data_x, ix_to_char, char_to_ix, num_iterations=35000, n_a=50, dino_names=7,
          vocab_size=27, verbose=False):
    """Trains the character-level model on the names of data_x (one per item),
    printing the smoothed loss and `dino_names` samples every 2000 iterations.
    Returns (parameters, the last name sampled)."""
    return _model(optimize, sample, data_x, ix_to_char, char_to_ix, num_iterations, n_a,
                  dino_names, vocab_size, verbose)


def _model(optimize, sample, data_x, ix_to_char, char_to_ix, num_iterations, n_a, dino_names,
           vocab_size, verbose):
    """The assignment's training loop around the given optimize and sample."""
    n_x, n_y = vocab_size, vocab_size
    parameters = initialize_parameters(n_a, n_x, n_y)
    loss = get_initial_loss(vocab_size, dino_names)
    examples = [x.strip() for x in data_x]
    np.random.seed(0)
    np.random.shuffle(examples)
    a_prev = np.zeros((n_a, 1))
    last_dino_name = "abc"
    ix_newline = char_to_ix["\n"]
    for j in range(num_iterations):
        idx = j % len(examples)
        single_example = examples[idx]
        single_example_chars = [c for c in single_example]
        single_example_ix = [char_to_ix[c] for c in single_example_chars]
        X = [None] + single_example_ix
        Y = X[1:] + [ix_newline]
        curr_loss, gradients, a_prev = optimize(X, Y, a_prev, parameters, learning_rate=0.01)
        if verbose and j in [0, len(examples) - 1, len(examples)]:
            print("j = ", j, "idx = ", idx)
        if verbose and j in [0]:
            print("single_example =", single_example)
            print("single_example_chars", single_example_chars)
            print("single_example_ix", single_example_ix)
            print(" X = ", X, "\n", "Y =       ", Y, "\n")
        loss = smooth(loss, curr_loss)
        if j % 2000 == 0:
            print("Iteration: %d, Loss: %f" % (j, loss) + "\n")
            seed = 0
            for name in range(dino_names):
                sampled_indices = sample(parameters, char_to_ix, seed)
                last_dino_name = get_sample(sampled_indices, ix_to_char)
                print(last_dino_name.replace("\n", ""))
                seed += 1
            print("\n")
    return parameters, last_dino_name
