"""One support turn: the Chatbot, its steps, memory and the streamed reply."""
