"""The story for one user: show the current scene, advance by a choice, log the messages.

Every incoming choice and every scene sent is logged as a ``NovelMessage``. The user's
state row is locked while a choice is applied, so a double-clicked button is applied once:
the second click finds the scene already changed and is refused as stale.
"""

from __future__ import annotations

from functools import partial

from app.models import MessageDirection, NovelMessage, NovelState, User
from app.services.errors import ChoiceNotAvailable, PremiumRequired, ServiceError
from app.services.limits import MESSAGE_TEXT_MAX_LENGTH, clean_text
from app.services.savepoint import insert_once
from app.story import Scene, Story
from app.unit_of_work import AppUnitOfWork

__all__ = ["advance_story", "ensure_novel_state", "get_novel_state", "log_message", "show_scene"]

# The scene of a state created without a story; read as the story's start scene.
NOT_STARTED = ""


async def ensure_novel_state(
    uow: AppUnitOfWork, user: User, story: Story | None = None, *, new_user: bool = False
) -> NovelState:
    """The user's novel state, created at ``story.start`` if missing."""
    return await _state(uow, user, story, for_update=False, new_user=new_user)


async def get_novel_state(uow: AppUnitOfWork, user: User, story: Story) -> NovelState:
    """The user's state, created if missing; a scene the story no longer has (or none yet)
    is moved to the start scene."""
    state = await _state(uow, user, story, for_update=False)
    _current_scene(state, story)
    return state


async def show_scene(
    uow: AppUnitOfWork, user: User, story: Story, *, incoming: str | None = None
) -> Scene:
    """The user's current scene, logged as sent; ``incoming`` (e.g. "/start") is logged first."""
    state = await _state(uow, user, story, for_update=False)
    scene = _current_scene(state, story)
    if incoming is not None:
        log_message(uow, user, scene.id, MessageDirection.IN, incoming)
    log_message(uow, user, scene.id, MessageDirection.OUT, scene.text)
    await uow.session.flush()
    return scene


async def advance_story(uow: AppUnitOfWork, user: User, choice_id: str, story: Story) -> Scene:
    """Apply the choice ``choice_id`` and return the scene it leads to.

    Raises :class:`ChoiceNotAvailable` when the choice is unknown or not offered by the
    user's current scene, and :class:`PremiumRequired` when it leads into a premium scene
    the user has not paid for; nothing changes then. A choice that leads back to the start
    scene starts over: the story variables are cleared before the choice's ``set``.
    """
    state = await _state(uow, user, story, for_update=True)
    current = _current_scene(state, story)
    found = story.find_choice(choice_id)
    if found is None or found[0].id != current.id:
        raise ChoiceNotAvailable(choice_id, current.id)
    choice = found[1]
    target = story.scene(choice.target)
    if target.premium and not state.premium:
        raise PremiumRequired(target.id)

    log_message(uow, user, current.id, MessageDirection.IN, choice.label)
    variables = {} if target.id == story.start else dict(state.variables)
    variables.update(choice.set)
    if variables != state.variables:
        state.variables = variables
    state.scene = target.id
    log_message(uow, user, target.id, MessageDirection.OUT, target.text)
    await uow.session.flush()
    return target


def log_message(
    uow: AppUnitOfWork, user: User, scene: str, direction: MessageDirection, text: str
) -> NovelMessage:
    """Log one story message; it is written with the next flush or the commit.

    The text is stored without NUL and cut to :data:`MESSAGE_TEXT_MAX_LENGTH` characters
    (the longest text a Telegram message can have).
    """
    text = clean_text(text, MESSAGE_TEXT_MAX_LENGTH)
    return uow.novel_messages.add(
        NovelMessage(user_id=user.id, scene=scene, direction=direction.value, text=text)
    )


def _current_scene(state: NovelState, story: Story) -> Scene:
    scene = story.scenes.get(state.scene)
    if scene is None:
        scene = story.start_scene
        state.scene = scene.id
    return scene


async def _state(
    uow: AppUnitOfWork,
    user: User,
    story: Story | None,
    *,
    for_update: bool,
    new_user: bool = False,
) -> NovelState:
    if not new_user:
        state = await uow.novel_states.get_for_user(user.id, for_update=for_update)
        if state is not None:
            return state
    candidate = NovelState(
        user_id=user.id,
        scene=story.start if story is not None else NOT_STARTED,
        variables={},
        premium=False,
    )
    if await insert_once(uow.session, partial(uow.novel_states.add, candidate)):
        return candidate
    # A concurrent request created it first.
    state = await uow.novel_states.get_for_user(user.id, for_update=for_update)
    if state is None:  # pragma: no cover - the constraint that refused us was not ours
        raise ServiceError("The story state could not be created; try again.")
    return state
